"""The witness's refusals of a submitted checkpoint; the HTTP edge answers each with the status the spec names."""

from __future__ import annotations

from shared.errors import ServiceError


class WitnessError(ServiceError):
    """Base of the witness's errors. `code` is stable; the message is for people."""

    code = "witness-error"


class MalformedSubmission(WitnessError):
    """The add-checkpoint body is not an old size line, proof lines, a blank line and a checkpoint (spec: 400)."""

    code = "malformed-submission"


class UnknownLog(WitnessError):
    """The checkpoint's origin is not a log this witness is configured for (spec: 404)."""

    code = "unknown-log"


class NotTrusted(WitnessError):
    """No signature on the checkpoint verifies against the log's key (spec: 403)."""

    code = "not-trusted"


class OldSizeBeyond(WitnessError):
    """The old size is larger than the checkpoint's own size (spec: 400)."""

    code = "old-size-beyond-checkpoint"


class OldSizeMismatch(WitnessError):
    """The old size is not the size of the latest checkpoint cosigned for the log (spec: 409, body the size)."""

    code = "old-size-mismatch"

    def __init__(self, latest_size: int, old_size: int) -> None:
        self.latest_size = latest_size
        super().__init__(f"the latest cosigned checkpoint has size {latest_size}, not {old_size}")


class RootMismatch(WitnessError):
    """A checkpoint of the cosigned size with another root: the log forked (spec: 409)."""

    code = "root-mismatch"


class BadProof(WitnessError):
    """The consistency proof does not show the checkpoint extends the latest cosigned one (spec: 422)."""

    code = "bad-consistency-proof"
