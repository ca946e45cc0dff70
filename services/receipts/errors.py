"""The receipts kit's refusals; the HTTP edge maps each (services/http/problems.py)."""

from __future__ import annotations

from shared.errors import ServiceError


class ReceiptsError(ServiceError):
    """Base of the receipts kit's errors. `code` is stable; the message is for people."""

    code = "receipts-error"


class BadSignature(ReceiptsError):
    """A webhook whose Standard Webhooks signature or timestamp does not verify with the platform's secret."""

    code = "bad-webhook-signature"
    message = "the webhook signature does not verify with this platform's secret (or its timestamp is stale)"


class LogInconsistency(ReceiptsError):
    """The log showed the kit something that contradicts itself or what it showed before: kept as evidence, never
    raised to a route (the kit records it, alerts and carries on with the view it already had)."""

    code = "log-inconsistency"

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind  # fork, bad-checkpoint-signature, bad-inclusion-proof, leaf-mismatch
        super().__init__(reason)


class StatementInvalid(ReceiptsError):
    """A part of a statement that does not verify (the offline verifier's verdict, never a route's)."""

    code = "statement-invalid"


class FetchFailed(ReceiptsError):
    """The service did not answer what the kit asked (down, or 409: not in the ledger yet): tried again later."""

    code = "fetch-failed"
