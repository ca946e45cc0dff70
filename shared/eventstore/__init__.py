"""The append-only event store shared by every service."""

from shared.eventstore.store import (
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    EventStoreError,
    NewEvent,
    RecordedEvent,
)

__all__ = [
    "ConcurrencyError",
    "DuplicateEventError",
    "EventStore",
    "EventStoreError",
    "NewEvent",
    "RecordedEvent",
]
