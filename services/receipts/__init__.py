"""A platform's receipts kit: the webhooks it received, the log's proofs of its orders, and statements for a court."""
