"""The HTTP shapes of webhook deliveries and their attempt log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

DeliveryState = Literal["pending", "delivered", "dead", "cancelled"]


class AttemptOut(BaseModel):
    """One attempt to deliver a webhook."""

    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error_kind: str | None
    response_excerpt: str | None
    worker: str


class DeliveryOut(BaseModel):
    """One webhook message (`webhook_id` is stable across retries) and every attempt made to deliver it."""

    id: str
    webhook_id: str
    order_id: str
    platform_id: str
    webhook_type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    attempt_log: list[AttemptOut]
