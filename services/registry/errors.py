"""The registry's refusals: one base class; only the HTTP edge (`services/http/problems.py`) gives them statuses."""

from __future__ import annotations

from shared.errors import ServiceError


class RegistryError(ServiceError):
    """Base of the registry's refusals. `code` is stable; the message is for people."""

    code = "registry-error"


class PlatformNotFound(RegistryError):
    """No platform has this id."""

    code = "not-found"
    message = "no such platform"


class PlatformNameTaken(RegistryError):
    """Another platform is registered under this name."""

    code = "platform-exists"


class WebhookUrlRefused(RegistryError):
    """The webhook URL is malformed or points at an address the service must not call."""

    code = "webhook-url-refused"


class RepresentativeRefused(RegistryError):
    """The request itself breaks the law's rule: an obliged platform's representative must be a Kazakh citizen."""

    code = "representative-refused"


class RepresentativeConflict(RepresentativeRefused):
    """A valid change that the platform's current registration makes break the rule (a conflict with its state).

    Raised when the change sends only one of `monthly_users` and `representative` and the one on record makes the
    pair unlawful; sending both that break it is the request's own fault (`RepresentativeRefused`).
    """


class SecretsKeyError(RegistryError):
    """The key-encryption key of the webhook secrets is missing or unusable, or a sealed secret does not open."""

    code = "secrets-key"
