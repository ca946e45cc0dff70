"""The webhook protocol both sides of a push share: Standard Webhooks signing and which destinations are safe to call."""
