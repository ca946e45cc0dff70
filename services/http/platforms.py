"""REST routes of the platform registry (admin writes; admin and auditor read)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from services.http.deps import Admin, AdminOrAuditor, ContainerDep
from services.http.problems import Problem
from services.registry import service as registry

router = APIRouter(prefix="/v1/platforms", tags=["platforms"])


class Representative(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
    citizenship: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "KZ"
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    phone: Annotated[str, Field(max_length=40)] | None = None


class PlatformIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
    monthly_users: Annotated[int, Field(ge=0, le=2**31 - 1)]
    representative: Representative
    webhook_url: Annotated[str, Field(max_length=2048, pattern=r"^[^\x00]+$")] | None = None


class PlatformPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")] | None = None
    monthly_users: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    representative: Representative | None = None
    webhook_url: Annotated[str, Field(max_length=2048, pattern=r"^[^\x00]+$")] | None = None


@router.post("", status_code=201, summary="Register a platform (admin); returns its webhook secret once")
def register_platform(body: PlatformIn, principal: Admin, c: ContainerDep, response: Response) -> dict[str, Any]:
    """Register a platform and its local representative."""
    registry.check_webhook_url(body.webhook_url, c.settings.webhook_allow_list)
    with c.db.transaction() as conn:
        row, secret = registry.register(
            conn,
            body.model_dump(mode="json"),
            c.clock.now(),
            actor=principal.key_id,
            obliged_above=c.settings.obliged_monthly_users,
        )
    response.headers["Location"] = f"/v1/platforms/{row.id}"
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get("", summary="The registry")
def list_platforms(principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Every registered platform."""
    with c.db.read() as conn:
        return [registry.public_view(r) for r in registry.list_all(conn)]


@router.get("/{platform_id}", summary="One platform")
def get_platform(platform_id: str, principal: AdminOrAuditor, c: ContainerDep) -> dict[str, Any]:
    """A platform's registration (never its secret)."""
    with c.db.read() as conn:
        return registry.public_view(registry.get(conn, platform_id))


@router.patch("/{platform_id}", summary="Change webhook URL or representative (admin)")
def patch_platform(platform_id: str, body: PlatformPatch, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """Only the fields sent change."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    if "webhook_url" in changes:
        registry.check_webhook_url(changes["webhook_url"], c.settings.webhook_allow_list)
    for required in ("name", "monthly_users", "representative"):
        if required in changes and changes[required] is None:
            raise Problem(422, "validation", "Invalid request", f"{required} cannot be null")
    with c.db.transaction() as conn:
        return registry.public_view(
            registry.update(
                conn,
                platform_id,
                changes,
                c.clock.now(),
                actor=principal.key_id,
                obliged_above=c.settings.obliged_monthly_users,
            )
        )


@router.post("/{platform_id}/secret/rotate", summary="Rotate the webhook secret (admin)")
def rotate_secret(platform_id: str, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """A new secret; the old one keeps signing beside it for the overlap period."""
    overlap = timedelta(hours=c.settings.secret_overlap_hours)
    with c.db.transaction() as conn:
        row, secret = registry.rotate_secret(conn, platform_id, c.clock.now(), overlap, actor=principal.key_id)
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get("/{platform_id}/history", summary="Every change to the registration, with its actor (admin, auditor)")
def platform_history(platform_id: str, principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Registration, representative and webhook changes, secret rotations, disabled endpoints: oldest first."""
    with c.db.read() as conn:
        return registry.history(conn, platform_id)
