"""The ledger's own refusals; the HTTP edge turns them into problem documents."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of the ledger's errors."""


class TreeTooSmall(LedgerError):
    """A tree size beyond what the ledger holds yet was asked for."""

    def __init__(self, requested: int, size: int) -> None:
        self.requested, self.size = requested, size
        super().__init__(f"the ledger holds {size} leaves; tree size {requested} does not exist yet")


class PositionNotFound(LedgerError):
    """No event at this position that the caller may see (or none in the ledger yet)."""

    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(f"no event at position {position}")


class InvalidRange(LedgerError):
    """A proof between sizes or positions that cannot exist (e.g. first > second, position > tree size)."""


class NoCheckpoint(LedgerError):
    """No checkpoint has been made yet."""

    def __init__(self) -> None:
        super().__init__("no checkpoint has been made yet")


class LedgerGap(LedgerError):
    """The event store handed over a position out of order: a hole in history, which the ledger never covers."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected, self.found = expected, found
        super().__init__(f"expected the event at position {expected}, found position {found}")


class SigningKeyError(LedgerError):
    """The checkpoint signing key is missing, unreadable or malformed."""


class NotYetInLedger(LedgerError):
    """An event has no global position yet, or the tree does not reach it yet: retry shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail}; it is not yet in the ledger, retry shortly")
