"""The HTTP shapes of a platform's receipts kit: a receipt acknowledged, and the kit's status with its alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ReceiptOut(BaseModel):
    """A webhook kept (or received before: the first receipt stands)."""

    webhook_id: str
    duplicate: bool = Field(description="true: this webhook-id was received before; nothing new was kept")


class CheckpointSeen(BaseModel):
    """The latest checkpoint the kit accepted."""

    tree_size: int
    root_hash: str


class AlertOut(BaseModel):
    """An inconsistency the log showed the kit, with its evidence (two signed notes that disagree prove a fork)."""

    id: int
    at: datetime
    kind: str = Field(description="fork, bad-checkpoint-signature, bad-inclusion-proof or leaf-mismatch")
    reason: str
    checkpoint: str | None = Field(description="the note the log served")
    earlier_checkpoint: str | None = Field(description="the accepted note it contradicts, if any")
    detail: dict[str, Any] = Field(description="what else the log showed: the proof, the event, its leaf")


class StatusOut(BaseModel):
    """What the kit holds; `ok` is false once the log has shown it any inconsistency."""

    ok: bool
    receipts: int
    forwards_pending: int
    forwards_failing: int
    events_proven: int
    checkpoints: int
    alerts: int
    checkpoint: CheckpointSeen | None
    last_sync_at: datetime | None
    sync_failures: int = Field(description="failed passes over the log in a row (the feeder lags: retried)")
    latest_alerts: list[AlertOut]
