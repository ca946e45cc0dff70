"""What the SLA read model refuses, in its own terms; the HTTP edge maps each to a problem response."""

from __future__ import annotations

from shared.errors import ServiceError


class SlaError(ServiceError):
    """Base of the SLA read model's refusals. `code` is stable; the message is for people."""

    code = "sla-error"


class InvalidSlaCursor(SlaError):
    """A page cursor this API never returned."""

    code = "bad-cursor"
    message = "the cursor is not one this API returned"
