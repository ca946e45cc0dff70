"""The ledger's leaf: the canonical bytes of one stored event, and its position in the tree.

Leaf bytes are the RFC 8785 (JSON Canonicalization Scheme) encoding of the envelope

    {"event_id": str, "stream_id": str, "version": int, "type": str, "schema_version": int,
     "data": object, "recorded_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ"}

that is: keys sorted by UTF-16 code units, no whitespace, strings in UTF-8 with JSON's minimal escaping,
numbers in ECMAScript form (so 1.0 and 1 are the same leaf, as a JSON column may hand either back).
`recorded_at` is RFC 3339 in UTC, always with six fraction digits and "Z", the precision both databases keep.
The event's `meta` (request id, actor) is operational and not part of the leaf. The leaf hash is RFC 9162's
SHA-256(0x00 || leaf bytes); it depends only on the event, so it is known as soon as the event is appended,
before the event has a global position.

Receipts: wherever the service hands out a leaf hash (webhook payloads, event listings, evidence bundles, the
proofs API) it is the standard base64 (with padding) of the 32 bytes, as in checkpoint notes: `receipt`.

Position -> index: the event with global position p (1, 2, 3, ... gap-free) is leaf index p - 1, and a tree of
n leaves holds exactly the events at positions 1..n, so "tree size" and "last position fed" are one number.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Protocol

import rfc8785

from services.ledger.merkle import leaf_hash as hash_leaf_bytes


class StoredEvent(Protocol):
    """What the leaf needs from an event (`shared.eventstore.RecordedEvent` has it)."""

    @property
    def event_id(self) -> str: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def recorded_at(self) -> datetime: ...


def rfc3339_utc(moment: datetime) -> str:
    """A time as RFC 3339 UTC with microseconds and 'Z'; naive times are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes have no place in the ledger: pass UTC-aware times")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(event: StoredEvent) -> dict[str, Any]:
    """The fields of an event that the ledger commits to."""
    return {
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": event.data,
        "recorded_at": rfc3339_utc(event.recorded_at),
    }


def leaf_bytes(event: StoredEvent) -> bytes:
    """The canonical leaf bytes of an event (RFC 8785 JSON of its envelope)."""
    return rfc8785.dumps(envelope(event))


def leaf_hash(event: StoredEvent) -> bytes:
    """RFC 9162 leaf hash of an event: usable at send time, before the event has a position."""
    return hash_leaf_bytes(leaf_bytes(event))


def receipt(event: StoredEvent) -> str:
    """The event's leaf hash as the service hands it out: standard base64 of the 32 bytes."""
    return base64.b64encode(leaf_hash(event)).decode()


def leaf_index(position: int) -> int:
    """The tree index of the event at a global position (positions start at 1, indexes at 0)."""
    if position < 1:
        raise ValueError(f"global positions start at 1, not {position}")
    return position - 1


def position_of(index: int) -> int:
    """The global position of the event at a tree index."""
    return index + 1
