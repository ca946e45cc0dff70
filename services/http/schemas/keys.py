"""The HTTP shapes of API keys: what an admin asks for, and a key as listed (never its plaintext, never its hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.http.schemas.orders import Text200
from services.keys.service import KeyStatus
from shared.auth import Role

TEN_YEARS_S = 10 * 366 * 86_400
Lifetime = Annotated[
    int, Field(ge=1, le=TEN_YEARS_S, description="Seconds from now until the key expires; left out: until revoked")
]
AuthorityId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", examples=["mci"])]
PlatformRef = Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")]


class _KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: Annotated[Text200, Field(description="A note on who holds the key")] | None = None
    expires_in_seconds: Lifetime | None = None


class AdminKeyIn(_KeyIn):
    """A key for an operator: every endpoint."""

    role: Literal["admin"]


class AuditorKeyIn(_KeyIn):
    """A key for oversight: reads every order, the registry and the ledger's proofs."""

    role: Literal["auditor"]


class IssuerKeyIn(_KeyIn):
    """A key for one issuing authority: issues and reviews that authority's orders."""

    role: Literal["issuer"]
    authority_id: AuthorityId
    authority_name: Text200 | None = None


class PlatformKeyIn(_KeyIn):
    """A key for one registered platform: its inbox and answers."""

    role: Literal["platform"]
    platform_id: PlatformRef


KeyIn = Annotated[AdminKeyIn | AuditorKeyIn | IssuerKeyIn | PlatformKeyIn, Field(discriminator="role")]


class RotateIn(BaseModel):
    """How to rotate: the new key's lifetime (default: the old one's), and how long the old key keeps working."""

    model_config = ConfigDict(extra="forbid")
    expires_in_seconds: Lifetime | None = None
    overlap_seconds: Annotated[
        int, Field(ge=0, le=30 * 86_400, description="The old key works this much longer (0: revoked at once)")
    ] = 0


class KeyOut(BaseModel):
    """A key as the service keeps it: its plaintext is never stored, only its hash, and neither is shown."""

    id: str
    role: Role
    status: KeyStatus
    authority_id: str | None
    authority_name: str | None
    platform_id: str | None
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        description="When the key was last used, to within `key_last_used_every_s` (default a minute)"
    )
    rotated_from: str | None = Field(description="The key a rotation replaced with this one")


class KeyCreatedOut(KeyOut):
    """A key just made: with its plaintext, shown this once."""

    key: str = Field(description="`Authorization: Bearer <key>`; shown only now: store it, it cannot be shown again")
