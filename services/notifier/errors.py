"""What the notifier refuses, in its own terms; the HTTP edge maps each to a problem response."""

from __future__ import annotations

from shared.errors import ServiceError


class NotifierError(ServiceError):
    """Base of the notifier's refusals. `code` is stable; the message is for people."""

    code = "notifier-error"


class DeliveryNotFound(NotifierError):
    """No delivery has this id."""

    code = "not-found"
    message = "no such delivery"


class DeliveryPending(NotifierError):
    """The delivery is already queued for its next attempt."""

    code = "delivery-pending"
    message = "it is already queued for its next attempt"
