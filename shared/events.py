"""Event types: frozen, versioned facts with stable type names ("order.issued").

The type string and schema version are part of the stored history: never rename a type, never change a field's
meaning. A new shape gets a new schema_version and an upcaster in `load_event`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

Category = Literal[
    "child_cyberbullying",
    "child_sexual_abuse_material",
    "illegal_image_distribution",
    "extremism",
    "illegal_gambling",
    "fraud",
    "drugs",
    "suicide_promotion",
    "other",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

RequestedAction = Literal["remove", "restrict"]
Outcome = Literal["removed", "restricted", "not_found", "declined"]
ContestGrounds = Literal["not_illegal", "forged", "out_of_scope", "already_actioned", "other"]
# How the platform was notified: its webhook answered 2xx, it read the order with its own key, or an operator
# recorded a notice sent another way (the last three).
NotificationChannel = Literal["webhook", "inbox", "email", "letter", "other"]
NoticeChannel = Literal["email", "letter", "other"]
NOTICE_CHANNELS: tuple[str, ...] = NoticeChannel.__args__  # type: ignore[attr-defined]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Authority(_Value):
    """The issuing authority as recorded on the order."""

    id: str
    name: str
    unit: str | None = None


class LegalBasis(_Value):
    """The act and article an order relies on."""

    act: str
    article: str


class Item(_Value):
    """One exact locator of content; outcomes are reported per item."""

    item_id: str
    url: str
    content_id: str | None = None
    content_type: str | None = None


class Attachment(_Value):
    """A document attached by digest (the bytes travel elsewhere)."""

    sha256: str
    name: str | None = None


class Redress(_Value):
    """How, and until when, the platform or the uploader may contest."""

    instructions: str
    contest_within_hours: int | None = None


class Representative(_Value):
    """A platform's local representative as registered (the law asks for a Kazakh citizen); an order's
    notification records the one on record then."""

    name: str
    citizenship: str
    email: str
    phone: str | None = None


class Event(_Value):
    """Base of every domain event. `type` and `schema_version` are the stable storage identity."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class OrderFields(_Value):
    """What an order says, defined once: the issue command carries it and `order.issued` records it."""

    issuer_reference: str
    authority: Authority
    signed_off_by: str
    platform_id: str
    legal_basis: LegalBasis
    category: Category
    category_specification: str | None = None
    statement_of_reasons: str
    items: tuple[Item, ...]
    requested_action: RequestedAction
    territorial_scope: tuple[str, ...]
    redress: Redress | None = None
    language: str
    attachments: tuple[Attachment, ...] = ()


class OrderIssued(OrderFields, Event):
    """An order was issued: its fields, its id and when the service recorded it."""

    type: ClassVar[str] = "order.issued"
    order_id: str
    issued_at: datetime


class DeliveryAttemptFailed(Event):
    type: ClassVar[str] = "order.delivery_attempt_failed"
    delivery_id: str
    webhook_type: str
    attempt: int
    attempted_at: datetime
    status_code: int | None = None
    error_kind: str
    duration_ms: float
    next_attempt_at: datetime | None = None


class OrderDelivered(Event):
    """The platform was notified: the SLA clock starts at `notified_at`.

    `address` is where: the webhook URL pushed to, the e-mail or postal address of a notice, or the API key that
    read the order. `representative` is who the registry had on record then. Both (and `evidence`, for a notice
    sent another way) were added later with defaults, so older `order.delivered` events still load as version 1.
    """

    type: ClassVar[str] = "order.delivered"
    channel: NotificationChannel
    notified_at: datetime
    delivery_id: str | None = None
    attempt: int | None = None
    address: str | None = None
    representative: Representative | None = None
    evidence: str | None = None


class OrderAcknowledged(Event):
    type: ClassVar[str] = "order.acknowledged"
    acknowledged_at: datetime
    note: str | None = None


class ItemOutcomeReported(Event):
    """What the platform did about one item: removed, restricted, not_found or declined (with a reason)."""

    type: ClassVar[str] = "order.item_outcome_reported"
    item_id: str
    outcome: Outcome
    reason: str | None = None
    actioned_at: datetime
    reported_at: datetime


class OrderClosed(Event):
    """Every item has an accepted outcome: removed, restricted or not found, or declined and the declines accepted."""

    type: ClassVar[str] = "order.closed"
    closed_at: datetime


class OrderContested(Event):
    type: ClassVar[str] = "order.contested"
    grounds: ContestGrounds
    detail: str
    contested_at: datetime


class OrderUpheld(Event):
    """The issuer upheld the order: after a contest (the clock resumes), or over declined items.

    `items_due_again` names the declined items that lose their outcome and are due again against the original
    deadline; it is empty when a contest was upheld (older events, which predate declines, load with it empty).
    """

    type: ClassVar[str] = "order.upheld"
    reason: str
    upheld_at: datetime
    items_due_again: tuple[str, ...] = ()


class OrderDeclinesAccepted(Event):
    """The issuer accepted the platform's declines: the order closes as declined (an `order.closed` follows)."""

    type: ClassVar[str] = "order.declines_accepted"
    reason: str
    accepted_at: datetime
    item_ids: tuple[str, ...]


class OrderWithdrawn(Event):
    type: ClassVar[str] = "order.withdrawn"
    reason: str
    withdrawn_at: datetime


class OrderEscalated(Event):
    type: ClassVar[str] = "order.escalated"
    level: int
    reason: str
    escalated_at: datetime


class PlatformRegistered(Event):
    """A platform was registered, with its representative and webhook endpoint (never its secret)."""

    type: ClassVar[str] = "platform.registered"
    platform_id: str
    name: str
    monthly_users: int
    representative: Representative
    webhook_url: str | None = None
    registered_at: datetime


class PlatformChanged(Event):
    """Fields of a platform's registration changed; `changes` holds only what changed, with its new value."""

    type: ClassVar[str] = "platform.changed"
    changes: dict[str, Any]
    changed_at: datetime


class PlatformSecretRotated(Event):
    """The webhook secret was replaced; the previous one signs beside it until `previous_valid_until`."""

    type: ClassVar[str] = "platform.secret_rotated"
    rotated_at: datetime
    previous_valid_until: datetime


class PlatformWebhookDisabled(Event):
    """Pushes to the platform stopped (its endpoint answered 410 Gone); its inbox remains."""

    type: ClassVar[str] = "platform.webhook_disabled"
    reason: str
    disabled_at: datetime


class TransparencyReportPublished(Event):
    """A finished month's transparency report, fixed: every document the report route serves for that month, each
    with the SHA-256 of its RFC 8785 form. Stream `transparency-YYYY-MM`; revision n is stream version n, and a
    revision after the first supersedes the one before it for a stated reason."""

    type: ClassVar[str] = "transparency.report_published"
    period: str  # YYYY-MM
    revision: int
    documents: dict[str, dict[str, Any]]  # "all" (no grouping) and one per grouping dimension
    sha256: dict[str, str]  # per document: hex SHA-256 of its RFC 8785 canonical JSON
    supersedes: int | None = None
    reason: str | None = None
    generated_at: datetime


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        OrderIssued,
        DeliveryAttemptFailed,
        OrderDelivered,
        OrderAcknowledged,
        ItemOutcomeReported,
        OrderClosed,
        OrderContested,
        OrderUpheld,
        OrderDeclinesAccepted,
        OrderWithdrawn,
        OrderEscalated,
        PlatformRegistered,
        PlatformChanged,
        PlatformSecretRotated,
        PlatformWebhookDisabled,
        TransparencyReportPublished,
    )
}


def dump_event(event: Event) -> dict[str, Any]:
    """Serialise an event's fields to JSON-ready data (type and version are stored beside it)."""
    return event.model_dump(mode="json")


def load_event(type_name: str, schema_version: int, data: dict[str, Any]) -> Event:
    """Rebuild an event from its stored type, schema version and data."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise KeyError(f"unknown event type {type_name!r}")
    if schema_version != cls.schema_version:
        raise ValueError(f"no upcaster from {type_name} v{schema_version} to v{cls.schema_version}")
    return cls.model_validate(data)
