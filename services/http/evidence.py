"""GET /v1/orders/{id}/evidence: one verifiable document about an order (see services/ledger/bundle.py).

Who: the order's issuer, the order's platform, auditors and admins; anyone else gets 404. The bundle's events
are proven against ONE signed checkpoint: the latest, if its tree holds every event the bundle shows; else the
tree is fed and a fresh checkpoint signed, synchronously (cheap: the feeder's catch-up and one signature). An
event without a global position yet (PostgreSQL numbers events a few ms after commit) is a 409 problem: the
request cannot make the sequencer number sooner than the transactions still open allow, so the client retries.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.http.deps import ContainerDep, OrderId, Reader
from services.http.ledger import _errors  # the ledger's problem responses, declared the same way
from services.http.problems import Problem
from services.http.schemas.deliveries import DeliveryOut
from services.ledger import bundle
from services.ledger.errors import NotYetInLedger
from services.ledger.leaf import rfc3339_utc
from services.notifier import deliveries as delivery_log
from services.orders.errors import OrderNotFound
from services.registry import service as registry
from shared.eventstore import RecordedEvent

router = APIRouter(prefix="/v1/orders", tags=["orders"])


# ----------------------------------------------------------------------------------------------- models


class EnvelopeOut(BaseModel):
    """The fields of a stored event that its ledger leaf commits to."""

    event_id: str
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    recorded_at: str = Field(description="RFC 3339 UTC with six fraction digits and Z, exactly as in the leaf")


class EvidenceEvent(BaseModel):
    """One event, its leaf and its inclusion proof against the bundle's checkpoint."""

    position: int = Field(description="global position; the leaf index is position - 1")
    leaf_hash: str = Field(description="base64 SHA-256(0x00 || leaf): the receipt webhooks and listings carry")
    leaf: str = Field(description="the leaf bytes: RFC 8785 canonical JSON of the envelope")
    envelope: EnvelopeOut
    proof: list[str] = Field(description="RFC 9162 audit path, base64 hashes, deepest first")


class EvidenceCheckpoint(BaseModel):
    """The signed checkpoint every proof leads to."""

    origin: str
    tree_size: int
    root_hash: str = Field(description="base64 SHA-256 root")
    note: str = Field(description="the C2SP signed note, verifiable with verifier_key")


class OnRecord(BaseModel):
    """The platform's registration when the order was delivered (replayable from platform_events)."""

    platform_id: str
    at: str = Field(description="the recorded_at of the order.delivered event")
    name: str | None = None
    monthly_users: int | None = None
    representative: dict[str, Any] | None = None
    webhook_url: str | None = None


class EvidenceBundle(BaseModel):
    """Everything needed to check an order's record offline with only the ledger's verifier key."""

    format: str = Field(description=bundle.FORMAT)
    order_id: str
    generated_at: str
    verifier_key: str
    checkpoint: EvidenceCheckpoint
    events: list[EvidenceEvent] = Field(description="the order's events, version 1..n")
    platform_events: list[EvidenceEvent] = Field(description="the platform's registry events up to the delivery")
    on_record: OnRecord | None = Field(description="who was on record at delivery; null if never delivered")
    deliveries: list[DeliveryOut]
    attestation: str = Field(description="signed note over the SHA-256 of the RFC 8785 form of all other fields")


# ----------------------------------------------------------------------------------------------- route


def _gather(c: ContainerDep, order_id: str) -> tuple[list[RecordedEvent], list[RecordedEvent], Any, list[Any]]:
    """The order's events, the platform's events up to the delivery, who was on record, and the deliveries."""
    with c.db.read() as conn:
        events = c.store.read_stream(conn, order_id)
        if not events:
            raise OrderNotFound()
        found = delivery_log.find(conn, order_id=order_id, limit=10_000)
        platform_id = str(events[0].data["platform_id"])
        delivered = next((e for e in events if e.type == "order.delivered"), None)
        if delivered is None:
            return events, [], None, found
        at = delivered.recorded_at
        state = registry.on_record(conn, platform_id, at)
        record = {"platform_id": platform_id, "at": rfc3339_utc(at)} | {
            k: state.get(k) for k in bundle.ON_RECORD_FIELDS
        }
        history = [e for e in c.store.read_stream(conn, registry.stream_id(platform_id)) if e.recorded_at <= at]
    return events, history, record, found


@router.get(
    "/{order_id}/evidence",
    operation_id="order_evidence",
    summary="Evidence bundle: events with inclusion proofs, one signed checkpoint, deliveries, who was on record",
    response_model=EvidenceBundle,
    responses=_errors(400, 401, 404, 409, 422),
)
def get_evidence(order_id: OrderId, principal: Reader, c: ContainerDep) -> Any:
    """One JSON document that `takedown ledger verify-bundle FILE --key KEY` checks offline (README: Ledger)."""
    if not c.orders.can_see(principal, order_id):
        raise OrderNotFound()
    events, history, record, found = _gather(c, order_id)
    positions = [e.position for e in [*events, *history] if e.position is not None]
    try:
        if len(positions) < len(events) + len(history):
            raise NotYetInLedger("an event of the order was recorded but has no global position yet")
        checkpoint = c.ledger.checkpoint_covering(max(positions))
    except NotYetInLedger as exc:
        raise Problem(409, "not-in-ledger-yet", "Not Yet In The Ledger", str(exc)) from exc
    paths = c.ledger.audit_paths(positions, checkpoint.tree_size)

    def entries(chosen: list[RecordedEvent]) -> list[dict[str, Any]]:
        return [bundle.event_entry(e, e.position, paths[e.position].proof) for e in chosen if e.position is not None]

    document = {
        "format": bundle.FORMAT,
        "order_id": order_id,
        "generated_at": rfc3339_utc(c.clock.now()),
        "verifier_key": c.ledger.public_key(),
        "checkpoint": {
            "origin": checkpoint.origin,
            "tree_size": checkpoint.tree_size,
            "root_hash": bundle.b64(checkpoint.root),
            "note": checkpoint.note,
        },
        "events": entries(events),
        "platform_events": entries(history),
        "on_record": record,
        "deliveries": [DeliveryOut.model_validate(d).model_dump(mode="json") for d in found],
    }
    # Returned as built: the attestation signs exactly these values, so nothing may re-serialise them on the way out.
    return JSONResponse(c.ledger.attest(document))
