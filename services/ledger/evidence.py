"""The evidence bundle of an order: one verifiable document (the format is services/ledger/bundle.py).

Who: the order's issuer, the order's platform, auditors and admins; anyone else learns nothing (EvidenceNotFound).
The bundle's events are proven against ONE signed checkpoint: the latest, if its tree holds every event the
bundle shows; else the tree is fed and a fresh checkpoint signed, synchronously (cheap: the feeder's catch-up and
one signature). An event without a global position yet (PostgreSQL numbers events a few ms after commit) is
NotYetInLedger: the sequencer cannot number sooner than the transactions still open allow, so the client retries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from pydantic_core import to_jsonable_python
from sqlalchemy import Connection

from services.ledger import bundle
from services.ledger.errors import EvidenceNotFound, NotYetInLedger
from services.ledger.leaf import rfc3339_utc
from services.ledger.service import Ledger
from shared.auth import Principal
from shared.clock import Clock
from shared.db import Database
from shared.eventstore import EventStore, RecordedEvent


@dataclass(frozen=True)
class EvidenceSources:
    """What the bundle shows beyond the event store, given by the wiring: the ledger reads no other service's tables."""

    deliveries: Callable[[Connection, str], Sequence[Mapping[str, Any]]]  # an order's webhook deliveries
    on_record: Callable[[Connection, str, datetime], Mapping[str, Any]]  # a platform's registration at an instant
    platform_stream: Callable[[str], str]  # a platform's stream id


class CheckpointEntry(TypedDict):
    """The signed checkpoint every proof of a bundle leads to."""

    origin: str
    tree_size: int
    root_hash: str
    note: str
    cosigned_note: str  # the note with the witnesses' cosignatures the ledger holds appended


class EvidenceDocument(TypedDict):
    """An attested evidence bundle, exactly as signed (bundle.TOP_LEVEL names its fields)."""

    format: str
    order_id: str
    generated_at: str
    verifier_key: str
    key_rotations: list[str]
    checkpoint: CheckpointEntry
    earlier_checkpoints: list[str]
    events: list[dict[str, Any]]
    platform_events: list[dict[str, Any]]
    on_record: dict[str, Any] | None
    deliveries: list[dict[str, Any]]
    attestation: str


@dataclass(frozen=True)
class _Gathered:
    events: list[RecordedEvent]
    platform_events: list[RecordedEvent]
    on_record: dict[str, Any] | None
    deliveries: list[dict[str, Any]]


class Evidence:
    """Assembles and attests evidence bundles; reads in one transaction, then proves against one checkpoint."""

    def __init__(self, db: Database, store: EventStore, clock: Clock, ledger: Ledger, sources: EvidenceSources) -> None:
        self.db, self.store, self.clock, self.ledger, self.sources = db, store, clock, ledger, sources

    def bundle(self, principal: Principal, order_id: str) -> EvidenceDocument:
        """The attested bundle that `takedown ledger verify-bundle FILE --key KEY` checks offline."""
        if not self.ledger.stream_visible(principal, order_id):
            raise EvidenceNotFound()
        found = self._gather(order_id)
        # An event an operator quarantined is not in the tree (its leaf commits to the decision): not evidence.
        aside = self.ledger.quarantined([e.position for e in (*found.events, *found.platform_events) if e.position])
        if aside:
            found.events[:] = [e for e in found.events if e.position not in aside]
            found.platform_events[:] = [e for e in found.platform_events if e.position not in aside]
        shown = [*found.events, *found.platform_events]
        positions = [e.position for e in shown if e.position is not None]
        if len(positions) < len(shown):
            raise NotYetInLedger("an event of the order was recorded but has no global position yet")
        checkpoint = self.ledger.checkpoint_covering(max(positions))
        paths = self.ledger.audit_paths(positions, checkpoint.tree_size)
        formats = self.ledger.leaf_formats()
        witnessed = self.ledger.cosigned_checkpoint(checkpoint)

        def entries(chosen: list[RecordedEvent]) -> list[dict[str, Any]]:
            return [
                bundle.event_entry(e, e.position, paths[e.position].proof, formats.of_position(e.position))
                for e in chosen
                if e.position is not None
            ]

        document = EvidenceDocument(
            format=bundle.FORMAT,
            order_id=order_id,
            generated_at=rfc3339_utc(self.clock.now()),
            verifier_key=self.ledger.public_key(),
            key_rotations=self.ledger.rotation_statements(),
            checkpoint=CheckpointEntry(
                origin=checkpoint.origin,
                tree_size=checkpoint.tree_size,
                root_hash=bundle.b64(checkpoint.root),
                note=checkpoint.note,
                cosigned_note=witnessed.note,
            ),
            earlier_checkpoints=self.ledger.cosigned_before(positions),
            events=entries(found.events),
            platform_events=entries(found.platform_events),
            on_record=found.on_record,
            deliveries=found.deliveries,
            attestation="",  # signs everything else, so it is filled in last
        )
        document["attestation"] = str(self.ledger.attest(document)["attestation"])
        return document

    def _gather(self, order_id: str) -> _Gathered:
        """The order's events, the platform's events up to the delivery, who was on record, and the deliveries."""
        with self.db.read() as conn:
            events = self.store.read_stream(conn, order_id)
            if not events:
                raise EvidenceNotFound()
            # The JSON form the API shows (RFC 3339 times): the attestation signs these values as they are.
            deliveries: list[dict[str, Any]] = to_jsonable_python(list(self.sources.deliveries(conn, order_id)))
            delivered = next((e for e in events if e.type == "order.delivered"), None)
            if delivered is None:
                return _Gathered(events, [], None, deliveries)
            platform_id, at = str(events[0].data["platform_id"]), delivered.recorded_at
            state = self.sources.on_record(conn, platform_id, at)
            record = {"platform_id": platform_id, "at": rfc3339_utc(at)} | {
                k: state.get(k) for k in bundle.ON_RECORD_FIELDS
            }
            stream = self.sources.platform_stream(platform_id)
            history = [e for e in self.store.read_stream(conn, stream) if e.recorded_at <= at]
        return _Gathered(events, history, record, deliveries)
