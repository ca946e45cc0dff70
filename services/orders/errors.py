"""What the order service refuses, in its own terms; the HTTP edge maps each to a problem response."""

from __future__ import annotations


class OrderError(Exception):
    """Base of the order service's refusals. `code` is stable; the message is for people."""

    code = "order-error"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class OrderNotFound(OrderError):
    """No such order, or not one this caller may see (a tenant never learns that another's order exists)."""

    code = "not-found"

    def __init__(self) -> None:
        super().__init__("no such order")


class UnknownPlatform(OrderError):
    """The order names a platform that is not registered."""

    code = "unknown-platform"


class InvalidOrder(OrderError):
    """The order's own rules refuse it at issue (the domain's code is kept)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class IdempotencyConflict(OrderError):
    """An Idempotency-Key or issuer_reference already names an order made from another request."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class InvalidCursor(OrderError):
    """A page cursor this API never returned."""

    code = "bad-cursor"

    def __init__(self) -> None:
        super().__init__("the cursor is not one this API returned")
