"""The ledger's own refusals; the HTTP edge turns them into problem documents."""

from __future__ import annotations

from shared.errors import ServiceError


class LedgerError(ServiceError):
    """Base of the ledger's errors. `code` is stable; the message is for people."""

    code = "ledger-error"


class TreeTooSmall(LedgerError):
    """A tree size beyond what the ledger holds yet was asked for."""

    code = "tree-too-small"

    def __init__(self, requested: int, size: int) -> None:
        self.requested, self.size = requested, size
        super().__init__(f"the ledger holds {size} leaves; tree size {requested} does not exist yet")


class PositionNotFound(LedgerError):
    """No event at this position that the caller may see (or none in the ledger yet)."""

    code = "not-found"

    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(f"no event at position {position}")


class InvalidRange(LedgerError):
    """A proof between sizes or positions that cannot exist (e.g. first > second, position > tree size)."""

    code = "invalid-range"


class NoCheckpoint(LedgerError):
    """No checkpoint has been made yet."""

    code = "no-checkpoint"
    message = "no checkpoint has been made yet"


class LedgerGap(LedgerError):
    """The event store handed over a position out of order: a hole in history, which the ledger never covers."""

    code = "ledger-gap"

    def __init__(self, expected: int, found: int) -> None:
        self.expected, self.found = expected, found
        super().__init__(f"expected the event at position {expected}, found position {found}")


class SigningKeyError(LedgerError):
    """The checkpoint signing key is missing, unreadable or malformed."""

    code = "signing-key"


class NotYetInLedger(LedgerError):
    """An event has no global position yet, or the tree does not reach it yet: retry shortly."""

    code = "not-in-ledger-yet"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail}; it is not yet in the ledger, retry shortly")


class EvidenceNotFound(LedgerError):
    """No such order, or not one this caller may see: its evidence is as unknown as the order."""

    code = "not-found"
    message = "no such order"


class LedgerIdentityError(LedgerError):
    """The configured origin is not the one the ledger was created with, or the key is not the chain's."""

    code = "ledger-identity"


class NotQuarantinable(LedgerError):
    """A quarantine the ledger refuses: not the position the feeder waits at, an event it admits, no reason."""

    code = "not-quarantinable"
