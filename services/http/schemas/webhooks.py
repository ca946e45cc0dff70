"""The HTTP shapes of the webhooks the service sends (documented under the OpenAPI document's `webhooks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from services.http.schemas.orders import OrderOut


class WebhookReceipt(BaseModel):
    """The event a webhook carries, as the ledger knows it: the platform's receipt."""

    event_id: str
    stream_version: int
    type: str
    leaf_hash: str = Field(description="the event's ledger leaf hash, base64")
    position: int | None = Field(description="its global position once numbered (null until then on PostgreSQL)")


class EscalationFired(BaseModel):
    """Which escalation level fired, and why."""

    level: int = Field(ge=1, le=5, description="1 not notified, 2 deadline missed, 3-4 still open, 5 review overdue")
    reason: str


class EscalatedData(BaseModel):
    """What an `order.escalated` webhook says."""

    order: OrderOut = Field(description="the order document after the escalation")
    deadline: datetime | None
    links: dict[str, str]
    event: WebhookReceipt
    escalation: EscalationFired = Field(description="the level that fired and its reason, stated explicitly")


class OrderEscalatedWebhook(BaseModel):
    """The body of `order.escalated`, pushed to the platform and (if configured) to the supervisor alike."""

    type: Literal["order.escalated"]
    timestamp: datetime
    data: EscalatedData
