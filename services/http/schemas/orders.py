"""The HTTP shapes of orders: requests are validated here and turned into commands; they never become events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import pycountry
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.config import JsonDict

from services.ledger.leaf import LeafFormats, receipt
from services.orders.domain import Status
from services.orders.sla_clock import SlaStatus
from shared.events import (
    Attachment,
    Authority,
    Category,
    ContestGrounds,
    Item,
    LegalBasis,
    NoticeChannel,
    NotificationChannel,
    OrderFields,
    Outcome,
    Redress,
    RequestedAction,
)
from shared.eventstore import RecordedEvent

MAX_ITEMS = 1000
MAX_REASONS = 10_000
MAX_URL = 2048

# PostgreSQL text cannot hold NUL, and surrounding whitespace is stripped before the length is checked: the
# patterns say both, so that every string the schema admits is one the service accepts. Whitespace is spelled out
# as pydantic strips it (Unicode White_Space): `\s` means a different set in JSON Schema's regex dialect (ECMA-262),
# in pydantic's (Rust) and in Python's.
WHITESPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Unicode format characters (general category Cf: bidi controls, zero-width joiners and spaces, tags...) make a
# name or a reason read differently from what is stored ("Trojan Source"); they are refused in every free-text
# field, as NUL is. Unicode 14 to 15.1 (tests/api/test_validation.py checks it against the running Python); the
# astral ones are written as themselves, which JSON Schema's, pydantic's and Python's regex dialects all read.
FORMAT_CHARACTERS = (
    r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    r"\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# Every free-text field: no NUL (PostgreSQL text cannot hold it) and no format character. The one definition;
# NOT_BLANK, the e-mail pattern, URLs and `_refuse_unreadable` below are built on it.
REFUSED_IN_TEXT = rf"\x00{FORMAT_CHARACTERS}"
NUL_FREE = rf"^[^{REFUSED_IN_TEXT}]*$"
NOT_BLANK = rf"^[{WHITESPACE}]*[^{WHITESPACE}{REFUSED_IN_TEXT}][^{REFUSED_IN_TEXT}]*$"
# No control characters, no whitespace (Python's `str.isspace` set, which the URL check uses, is within these) and
# no format characters.
URL_CHARACTERS = rf"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000{FORMAT_CHARACTERS}]"
_REFUSED = re.compile(f"[{REFUSED_IN_TEXT}]")


def no_nul() -> Any:
    """The constraint of a free-text string: no NUL, no format character (the pattern states it to clients)."""
    return Field(pattern=NUL_FREE)


def _without_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def not_sent() -> Any:
    """The default of a field that may be left out but not sent as null (the default is kept out of the schema)."""
    return Field(default=None, json_schema_extra=_without_default)


Text200 = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK)]
Text2000 = Annotated[str, Field(min_length=1, max_length=2000, pattern=NOT_BLANK)]


def _absolute_http_url(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError("a URL must not contain whitespace")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value


# Looked up in sets made once: pycountry's own lookups cost 7% of an order's intake.
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_SUBDIVISIONS = frozenset(s.code for s in pycountry.subdivisions)


def _territory(value: str) -> str:
    code = value.upper()
    if len(code) == 2 and code in _COUNTRIES:
        return code
    if "-" in code and code in _SUBDIVISIONS:
        return code
    raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision code")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a timezone (RFC 3339, e.g. 2026-03-02T09:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc


def _no_nul(value: str) -> str:
    if (found := _REFUSED.search(value)) is not None:
        char = found.group()
        if char == "\x00":
            raise ValueError("NUL characters are not allowed")
        raise ValueError(
            f"format character U+{ord(char):04X} is not allowed (Unicode Cf: bidi controls, zero-width characters)"
        )
    return value


# An absolute http(s) URL with a host; any non-space characters after the host (IRIs too).
ITEM_URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[0-9]*)?(?:[/?#]{URL_CHARACTERS}*)?$"
TERRITORIES: list[str] = sorted(code for code in _COUNTRIES | _SUBDIVISIONS if 2 <= len(code) <= 6)

UtcTime = Annotated[datetime, AfterValidator(_utc)]
# The pattern tells clients the form; `_absolute_http_url` checks it, with messages people can read (the pattern
# admits no URL the check refuses).
HttpUrl = Annotated[
    str,
    Field(max_length=MAX_URL, json_schema_extra={"pattern": ITEM_URL_PATTERN}),
    AfterValidator(_absolute_http_url),
]
Territory = Annotated[
    str,
    Field(min_length=2, max_length=6),
    AfterValidator(_territory),
    WithJsonSchema(
        {"type": "string", "enum": TERRITORIES, "description": "ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision"}
    ),
]


class StrictIn(BaseModel):
    """A request body: unknown fields refused, whitespace stripped, NUL and format characters refused by name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_unreadable(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL, and format characters hide what a text says: refuse both, before the
        # patterns (which say the same to clients) answer with a message nobody can read.
        if isinstance(value, str):
            _no_nul(value)
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, str):
                    _no_nul(v)
        return value


class ItemIn(StrictIn):
    url: HttpUrl
    item_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")] | None = None
    content_id: Annotated[str, Field(max_length=200), no_nul()] | None = None
    content_type: Annotated[str, Field(max_length=64), no_nul()] | None = None


class LegalBasisIn(StrictIn):
    act: Text200
    article: Text200


class RedressIn(StrictIn):
    instructions: Text2000
    contest_within_hours: Annotated[int, Field(ge=1, le=24 * 365)] | None = None


class AttachmentIn(StrictIn):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    name: Annotated[str, Field(max_length=200), no_nul()] | None = None


class IssueOrderIn(StrictIn):
    """An order as an issuer sends it (the authority comes from the API key).

    Item ids and item URLs must each be unique within the order (JSON Schema cannot say that of a property).
    """

    # Category "other" needs a specification: said in the schema too, so that a schema-valid order is not refused.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"category": {"const": "other"}}, "required": ["category"]},
            "then": {
                "required": ["category_specification"],
                "properties": {"category_specification": {"type": "string", "pattern": NOT_BLANK}},
            },
        }
    )

    issuer_reference: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
    platform_id: Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")]
    signed_off_by: Text200
    unit: Annotated[str, Field(max_length=200), no_nul()] | None = None
    legal_basis: LegalBasisIn
    category: Category
    category_specification: Annotated[str, Field(max_length=500), no_nul()] | None = None
    statement_of_reasons: Annotated[str, Field(min_length=1, max_length=MAX_REASONS, pattern=NOT_BLANK)]
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_ITEMS)]
    requested_action: RequestedAction = "remove"
    territorial_scope: Annotated[
        list[Territory], Field(min_length=1, max_length=250, json_schema_extra={"uniqueItems": True})
    ] = ["KZ"]
    redress: RedressIn | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "kk"
    attachments: Annotated[list[AttachmentIn], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _consistent(self) -> IssueOrderIn:
        if self.category == "other" and not self.category_specification:
            raise ValueError("category 'other' needs a category_specification")
        ids = [i.item_id for i in self.items if i.item_id]
        if len(ids) != len(set(ids)):
            raise ValueError("item_id values must be unique")
        urls = [i.url for i in self.items]
        if len(urls) != len(set(urls)):
            raise ValueError("the same item URL is listed twice")
        if len(set(self.territorial_scope)) != len(self.territorial_scope):
            raise ValueError("territorial_scope lists a code twice")
        return self

    def to_order(self, authority_id: str, authority_name: str) -> OrderFields:
        """The order this request asks for, on behalf of the authority the API key speaks for."""
        return OrderFields(
            issuer_reference=self.issuer_reference,
            authority=Authority(id=authority_id, name=authority_name, unit=self.unit),
            signed_off_by=self.signed_off_by,
            platform_id=self.platform_id,
            legal_basis=LegalBasis(act=self.legal_basis.act, article=self.legal_basis.article),
            category=self.category,
            category_specification=self.category_specification,
            statement_of_reasons=self.statement_of_reasons,
            items=tuple(
                Item(item_id=item_id, url=i.url, content_id=i.content_id, content_type=i.content_type)
                for item_id, i in zip(self._item_ids(), self.items, strict=True)
            ),
            requested_action=self.requested_action,
            territorial_scope=tuple(self.territorial_scope),
            redress=Redress(**self.redress.model_dump()) if self.redress else None,
            language=self.language,
            attachments=tuple(Attachment(**a.model_dump()) for a in self.attachments),
        )

    def _item_ids(self) -> list[str]:
        """The issuer's item ids where given, else item-1, item-2, ... skipping any the issuer used."""
        taken = {i.item_id for i in self.items if i.item_id}
        free = (f"item-{n}" for n in range(1, 2 * len(self.items) + 2) if f"item-{n}" not in taken)
        return [i.item_id or next(free) for i in self.items]


class AcknowledgeIn(StrictIn):
    note: Annotated[str, Field(max_length=2000), no_nul()] | None = None


class OutcomeIn(StrictIn):
    # A declined item needs a reason: said in the schema too, so that a schema-valid report is never refused.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"outcome": {"const": "declined"}}, "required": ["outcome"]},
            "then": {"required": ["reason"], "properties": {"reason": {"type": "string", "pattern": NOT_BLANK}}},
        }
    )

    item_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK)]
    outcome: Outcome
    actioned_at: UtcTime
    reason: Annotated[str, Field(max_length=2000), no_nul()] | None = None

    @model_validator(mode="after")
    def _aware(self) -> OutcomeIn:
        if self.outcome == "declined" and not self.reason:
            raise ValueError("a declined item needs a reason")
        return self


class OutcomesIn(StrictIn):
    outcomes: Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_ITEMS)]


class ContestIn(StrictIn):
    grounds: ContestGrounds
    detail: Text2000


class NoticeIn(StrictIn):
    """A notice sent to the platform's representative by another channel than the webhook, with its evidence."""

    channel: NoticeChannel
    address: Text200
    evidence: Text2000


class ReviewIn(StrictIn):
    reason: Text2000


# What the API returns. The fields mirror `views.render()` (orders) one for one; a test keeps them equal.


class AuthorityOut(BaseModel):
    """The issuing authority as recorded on the order."""

    id: str
    name: str
    unit: str | None


class LegalBasisOut(BaseModel):
    """The act and article the order relies on."""

    act: str
    article: str


class RedressOut(BaseModel):
    """How, and until when, the order may be contested."""

    instructions: str
    contest_within_hours: int | None


class AttachmentOut(BaseModel):
    """A document attached by its SHA-256 digest."""

    sha256: str
    name: str | None


class ItemOutcomeOut(BaseModel):
    """What the platform reported for one item."""

    outcome: Outcome
    reason: str | None
    actioned_at: datetime
    reported_at: datetime


class RepresentativeOnRecordOut(BaseModel):
    """The platform's representative the registry had on record when the platform was notified."""

    name: str
    citizenship: str
    email: str
    phone: str | None = None


class NotificationOut(BaseModel):
    """How the platform was notified (the start of the SLA clock): channel, where, and who was on record."""

    channel: NotificationChannel
    notified_at: datetime
    delivery_id: str | None
    attempt: int | None
    address: str | None
    representative: RepresentativeOnRecordOut | None
    evidence: str | None


class OrderItemOut(BaseModel):
    """One locator of content and, once reported, its outcome."""

    item_id: str
    url: str
    content_id: str | None
    content_type: str | None
    outcome: ItemOutcomeOut | None


class OrderOut(BaseModel):
    """An order as issued, with its items and outcomes, its status and its deadline (null until notified)."""

    id: str
    issuer_reference: str
    authority: AuthorityOut
    signed_off_by: str
    platform_id: str
    legal_basis: LegalBasisOut
    category: Category
    category_specification: str | None
    statement_of_reasons: str
    requested_action: RequestedAction
    territorial_scope: list[str]
    redress: RedressOut | None
    language: str
    attachments: list[AttachmentOut]
    issued_at: datetime
    items: list[OrderItemOut]
    status: Status
    version: int
    notified_at: datetime | None
    notified_via: NotificationChannel | None
    notification: NotificationOut | None
    deadline: datetime | None
    sla_status: SlaStatus = Field(description="as of the response; moves with time alone while the clock runs")
    remaining_seconds: int | None = Field(
        description="whole seconds to the deadline as of the response; negative once breached"
    )
    review_due: datetime | None
    acknowledged_at: datetime | None
    contested_at: datetime | None
    upheld_at: datetime | None
    withdrawn_at: datetime | None
    closed_at: datetime | None
    declines_accepted_at: datetime | None
    escalation_levels: list[int]
    failed_delivery_attempts: int


class OrderPage(BaseModel):
    """One page of orders, newest first; `next_cursor` is null on the last page."""

    items: list[OrderOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """A recorded fact about an order; `position` is its global position (null until the sequencer numbers it)."""

    event_id: str
    type: str
    schema_version: int
    version: int
    position: int | None
    recorded_at: datetime
    data: dict[str, Any]
    leaf_hash: str = Field(description="the event's ledger leaf hash (RFC 9162, base64): the receipt")

    @classmethod
    def of(cls, recorded: RecordedEvent, formats: LeafFormats) -> EventOut:
        """The API form of a stored event, with its ledger receipt (in its leaf's format): its fields copied once."""
        copied = {name: getattr(recorded, name) for name in cls.model_fields if name != "leaf_hash"}
        return cls(**copied, leaf_hash=receipt(recorded, formats.of_position(recorded.position)))


StatusFilter = Status
