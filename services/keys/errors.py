"""The key service's refusals: one base class; only the HTTP edge (`services/http/problems.py`) gives them statuses."""

from __future__ import annotations

from shared.errors import ServiceError


class KeysError(ServiceError):
    """Base of the key service's refusals. `code` is stable; the message is for people."""

    code = "keys-error"


class KeyNotFound(KeysError):
    """No key has this id."""

    code = "not-found"
    message = "no such API key"


class KeyRefused(KeysError):
    """The key asked for cannot exist: an issuer key without an authority, a platform key for no known platform."""

    code = "key-refused"


class KeyNotActive(KeysError):
    """The key is revoked or expired: it cannot be rotated (make a new one instead)."""

    code = "key-not-active"
