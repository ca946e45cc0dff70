"""A C2SP tlog-witness: verifies logs' checkpoints against the latest it cosigned and cosigns the consistent ones."""
