"""The HTTP shapes of platforms and their registration history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from services.http.schemas.orders import REFUSED_IN_TEXT, WHITESPACE, StrictIn, Text200, no_nul, not_sent

# An absolute http(s) URL with a host the notifier can call: the form the registry checks (`check_webhook_url`)
# before it resolves the host. Resolving to an address that is not allowed is refused with 422 on top of this.
WEBHOOK_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
    r"(?:[/?#][\x21-\x7e]*)?$"
)
WebhookUrl = Annotated[
    str,
    Field(
        max_length=2048,
        # Stated for clients; the registry's own check (`check_webhook_url`) refuses anything else with its reason.
        json_schema_extra={"pattern": WEBHOOK_URL_PATTERN},
        description="An absolute http(s) URL whose host resolves to an address the notifier may call",
        examples=["https://platform.example/takedown/webhook"],
    ),
]
PlatformName = Text200
MonthlyUsers = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Representative(StrictIn):
    """The platform's local representative."""

    name: Text200
    citizenship: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")] = "KZ"
    email: Annotated[
        str, Field(max_length=320, pattern=rf"^[^@{WHITESPACE}{REFUSED_IN_TEXT}]+@[^@{WHITESPACE}{REFUSED_IN_TEXT}]+$")
    ]
    phone: Annotated[str, Field(max_length=40), no_nul()] | None = None


class PlatformIn(StrictIn):
    """A platform as an admin registers it."""

    name: PlatformName
    monthly_users: MonthlyUsers
    representative: Representative
    webhook_url: WebhookUrl | None = None


class PlatformPatch(StrictIn):
    """The registration fields to change; those not sent stay as they are, `webhook_url: null` removes the webhook."""

    # name, monthly_users and representative may be left out but not sent as null: the registry requires them.
    name: PlatformName = not_sent()
    monthly_users: MonthlyUsers = not_sent()
    representative: Representative = not_sent()
    webhook_url: WebhookUrl | None = None


def obliged_rule(obliged_above: int) -> dict[str, Any]:
    """The JSON Schema rule of the law: a platform with more users than this names a Kazakh-citizen representative."""
    return {
        "if": {"properties": {"monthly_users": {"minimum": obliged_above + 1}}, "required": ["monthly_users"]},
        "then": {"properties": {"representative": {"properties": {"citizenship": {"const": "KZ"}}}}},
    }


class RepresentativeOut(BaseModel):
    """A representative as registered."""

    name: str
    citizenship: str
    email: str
    phone: str | None = None


class PlatformOut(BaseModel):
    """A platform's registration (never its secrets)."""

    id: str
    name: str
    monthly_users: int
    representative: RepresentativeOut
    webhook_url: str | None
    webhook_enabled: bool
    webhook_disabled_reason: str | None
    secret_rotation_overlap_until: datetime | None
    created_at: datetime
    updated_at: datetime


class PlatformWithSecretOut(PlatformOut):
    """A platform's registration with its new webhook secret, shown this once."""

    webhook_secret: Annotated[str, Field(pattern=r"^whsec_", description="Standard Webhooks secret (whsec_ + base64)")]


class PlatformChangeOut(BaseModel):
    """One recorded change of a platform's registration (`platform.registered`, `platform.changed`, ...)."""

    type: str
    recorded_at: datetime
    actor: str | None = Field(description="the API key (id) that made the change; null for the service itself")
    position: int | None
    data: dict[str, Any]
