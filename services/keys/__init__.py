"""API keys' lifecycle: create, list, revoke, rotate, expiry and last use (the table and cache are shared.auth's)."""
