"""The HTTP shapes of an order's evidence bundle (built and attested by services/ledger/evidence.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.http.schemas.deliveries import DeliveryOut
from services.ledger import bundle


class EnvelopeOut(BaseModel):
    """The fields of a stored event that its ledger leaf commits to."""

    event_id: str
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    recorded_at: str = Field(description="RFC 3339 UTC with six fraction digits and Z, exactly as in the leaf")
    leaf_format: int | None = Field(None, description="2 in a format 2 leaf (with meta and seal); absent in format 1")
    meta: dict[str, Any] | None = Field(None, description="format 2: the event's request id and actor")
    seal: dict[str, Any] | None = Field(None, description="format 2: the writer's seal (null if stored unsealed)")


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
    cosigned_note: str = Field(
        description="the same note with the witnesses' cosignature/v1 lines the ledger holds for it appended"
    )


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
    verifier_key: str = Field(description="the checkpoint key in force when the bundle was made")
    key_rotations: list[str] = Field(description="signed key rotation statements, from the ledger's first key on")
    checkpoint: EvidenceCheckpoint
    earlier_checkpoints: list[str] = Field(
        description="for each event, the newest cosigned checkpoint that does not hold it yet (cosigned notes):"
        " an event recorded well before such a checkpoint was cosigned is backdated"
    )
    events: list[EvidenceEvent] = Field(description="the order's events, version 1..n")
    platform_events: list[EvidenceEvent] = Field(description="the platform's registry events up to the delivery")
    on_record: OnRecord | None = Field(description="who was on record at delivery; null if never delivered")
    deliveries: list[DeliveryOut]
    attestation: str = Field(description="signed note over the SHA-256 of the RFC 8785 form of all other fields")
