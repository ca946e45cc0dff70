"""The ledger's leaf: the canonical bytes of one stored event, and its position in the tree.

Leaf bytes are the RFC 8785 (JSON Canonicalization Scheme) encoding of the event's envelope, in one of two
formats. Format 1 (the ledger's first):

    {"event_id": str, "stream_id": str, "version": int, "type": str, "schema_version": int,
     "data": object, "recorded_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ"}

Format 2 adds what format 1 left out, so that the database cannot change it unseen either:

    {"leaf_format": 2, ...the format 1 fields..., "meta": object, "seal": object or null}

`meta` is the event's request id and actor; `seal` is the writer's signature of the event (the `seal` column,
shared/eventstore/writer.py), null for an event stored unsealed. `leaf_format` keeps a format 2 leaf from ever
reading as a format 1 one. RFC 8785: keys sorted by UTF-16 code units, no whitespace, strings in UTF-8 with JSON's
minimal escaping, numbers in ECMAScript form (so 1.0 and 1 are the same leaf, as a JSON column may hand either
back). `recorded_at` is RFC 3339 in UTC, always with six fraction digits and "Z", the precision both databases
keep. The leaf hash is RFC 9162's SHA-256(0x00 || leaf bytes); it depends only on the event and the format, so
it is known as soon as the event is appended, before the event has a global position.

Which leaf has which format: `ledger_leaf_formats` holds one row per format after the first, (format, from
size): every leaf index at or above `from_size` has that format (migration 0013 recorded format 2 from the tree
size it found, so the leaves fed before keep format 1 and verify as they were written). `LeafFormats` is that
table in memory.

Receipts: wherever the service hands out a leaf hash (webhook payloads, event listings, evidence bundles, the
proofs API) it is the standard base64 (with padding) of the 32 bytes, as in checkpoint notes: `receipt`.

Position -> index: the event with global position p (1, 2, 3, ... gap-free) is leaf index p - 1, and a tree of
n leaves holds exactly the events at positions 1..n, so "tree size" and "last position fed" are one number.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import canonical
from shared.eventstore.writer import seal_form
from shared.tlog.merkle import leaf_hash as hash_leaf_bytes


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
    def meta(self) -> dict[str, Any]: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def seal(self) -> dict[str, Any] | None: ...


V1, V2 = 1, 2
CURRENT = V2  # the format new leaves are written in
FORMATS = (V1, V2)


@dataclass(frozen=True)
class LeafFormats:
    """Which format each leaf index was written in: (from index, format) switch-overs, ascending; before any: v1."""

    switches: tuple[tuple[int, int], ...] = ()

    def at(self, index: int) -> int:
        """The format of the leaf at this index."""
        found = V1
        for start, fmt in self.switches:
            if index >= start:
                found = fmt
        return found

    def of_position(self, position: int | None) -> int:
        """The format of the event at this global position (an unnumbered event is new: the newest format)."""
        if position is None:
            return self.switches[-1][1] if self.switches else V1
        return self.at(leaf_index(position))


def rfc3339_utc(moment: datetime) -> str:
    """A time as RFC 3339 UTC with microseconds and 'Z'; naive times are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes have no place in the ledger: pass UTC-aware times")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(event: StoredEvent, fmt: int) -> dict[str, Any]:
    """The fields of an event that a leaf of this format commits to."""
    fields: dict[str, Any] = {
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": event.data,
        "recorded_at": rfc3339_utc(event.recorded_at),
    }
    if fmt == V1:
        return fields
    if fmt == V2:
        return {"leaf_format": V2, **fields, "meta": event.meta, "seal": event.seal}
    raise ValueError(f"unknown leaf format {fmt}")


def leaf_bytes(event: StoredEvent, fmt: int, forms: tuple[bytes, bytes] | None = None) -> bytes:
    """The canonical leaf bytes of an event in this format (RFC 8785 JSON of its envelope).

    `forms`: the canonical bytes of the event's data and meta, if the caller has them (the feeder encodes them
    once for the writer seal's digest and this leaf).
    """
    if fmt != V2:
        return canonical.dumps(envelope(event, fmt))  # RFC 8785, fast path for the common values (shared/canonical.py)
    data, meta = forms or (canonical.dumps(event.data), canonical.dumps(event.meta))
    # The format 2 envelope's keys are fixed and ASCII, so their sorted order is fixed: written around the
    # canonical values (tests/ledger/test_identity.py checks it against canonical.dumps of the whole envelope).
    return b"".join(
        (
            b'{"data":', data,
            b',"event_id":', canonical.string(event.event_id),
            b',"leaf_format":2,"meta":', meta,
            b',"recorded_at":"', rfc3339_utc(event.recorded_at).encode(),
            b'","schema_version":', canonical.integer(event.schema_version),
            b',"seal":', seal_form(event.seal),
            b',"stream_id":', canonical.string(event.stream_id),
            b',"type":', canonical.string(event.type),
            b',"version":', canonical.integer(event.version),
            b"}",
        )
    )  # fmt: skip


def leaf_hash(event: StoredEvent, fmt: int, forms: tuple[bytes, bytes] | None = None) -> bytes:
    """RFC 9162 leaf hash of an event: usable at send time, before the event has a position."""
    return hash_leaf_bytes(leaf_bytes(event, fmt, forms))


def receipt(event: StoredEvent, fmt: int = CURRENT) -> str:
    """The event's leaf hash as the service hands it out (standard base64); new events are in the current format."""
    return base64.b64encode(leaf_hash(event, fmt)).decode()


def leaf_index(position: int) -> int:
    """The tree index of the event at a global position (positions start at 1, indexes at 0)."""
    if position < 1:
        raise ValueError(f"global positions start at 1, not {position}")
    return position - 1


def position_of(index: int) -> int:
    """The global position of the event at a tree index."""
    return index + 1
