"""What the transparency report refuses, in its own terms; the HTTP edge maps each to a problem response."""

from __future__ import annotations

from shared.errors import ServiceError


class TransparencyError(ServiceError):
    """Base of the transparency report's refusals. `code` is stable; the message is for people."""

    code = "transparency-error"


class ReportError(TransparencyError, ValueError):
    """A report that cannot be made as asked (a range or grouping outside the published lattice)."""

    code = "invalid-report"


class NotPublished(TransparencyError, LookupError):
    """The month has no published report (yet)."""

    code = "not-published"


class MonthNotFinished(TransparencyError):
    """A month is published only once it has ended: its figures still grow."""

    code = "month-not-finished"


class AmendmentRefused(TransparencyError):
    """An amendment needs a reason, and a published month to supersede."""

    code = "amendment-refused"
