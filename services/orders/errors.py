"""What the order service refuses, in its own terms; the HTTP edge maps each to a problem response."""

from __future__ import annotations

from shared.errors import CodedError, ServiceError


class OrderError(ServiceError):
    """Base of the order service's refusals. `code` is stable; the message is for people."""

    code = "order-error"


class DomainError(CodedError, OrderError):
    """A command the order's rules refuse (services/orders/domain.py); nothing is recorded."""


class OrderNotFound(OrderError):
    """No such order, or not one this caller may see (a tenant never learns that another's order exists)."""

    code = "not-found"
    message = "no such order"


class UnknownPlatform(OrderError):
    """The order names a platform that is not registered."""

    code = "unknown-platform"


class InvalidOrder(CodedError, OrderError):
    """The order's own rules refuse it at issue (the domain's code is kept)."""


class IdempotencyConflict(CodedError, OrderError):
    """An Idempotency-Key or issuer_reference already names an order made from another request."""


class InvalidCursor(OrderError):
    """A page cursor this API never returned."""

    code = "bad-cursor"
    message = "the cursor is not one this API returned"
