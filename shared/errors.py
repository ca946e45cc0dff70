"""The one shape of a service's refusal: a stable `code` (the problem type at the HTTP edge) and a reason for people.

Each package derives its own base from ServiceError in its errors.py; only services/http/problems.py maps them.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal in a service's own terms; `message` is the reason when none is given."""

    code = "error"
    message = "refused"

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason or self.message
        super().__init__(self.reason)


class CodedError(ServiceError):
    """A refusal whose code is chosen where it is raised (e.g. each of the order's rules has its own)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
