"""The HTTP edge: the app, its dependencies, and the mapping of service errors to RFC 9457 problems."""
