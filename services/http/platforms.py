"""REST routes of the platform registry (admin writes; admin and auditor read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.http.deps import ROLE_CHECKED, Admin, AdminOrAuditor, ContainerDep, PlatformId
from services.http.problems import problem_responses
from services.http.schemas.platforms import (
    PlatformChangeOut,
    PlatformIn,
    PlatformOut,
    PlatformPatch,
    PlatformWithSecretOut,
    Representative,
)
from services.registry import service as registry

router = APIRouter(prefix="/v1/platforms", tags=["platforms"])


def stored_representative(representative: Representative) -> dict[str, Any]:
    """A representative as recorded: whole, defaults included (a PATCH replaces it whole), no null phone."""
    return representative.model_dump(mode="json", exclude_none=True)


@router.post(
    "",
    status_code=201,
    summary="Register a platform (admin); returns its webhook secret once",
    response_model=PlatformWithSecretOut,
    responses={
        201: {"description": "The platform, registered", "headers": {"Location": {"schema": {"type": "string"}}}},
        **ROLE_CHECKED,
        **problem_responses(400, 409, 413, 415, 422, 503),
    },
)
def register_platform(body: PlatformIn, principal: Admin, c: ContainerDep, response: Response) -> dict[str, Any]:
    """Register a platform and its local representative."""
    fields = {**body.model_dump(mode="json"), "representative": stored_representative(body.representative)}
    row, secret = c.registry.register(principal.key_id, fields)
    response.headers["Location"] = f"/v1/platforms/{row.id}"
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get("", summary="The registry", response_model=list[PlatformOut], responses=ROLE_CHECKED)
def list_platforms(principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Every registered platform."""
    return [registry.public_view(r) for r in c.registry.list_all()]


@router.get(
    "/{platform_id}",
    summary="One platform",
    response_model=PlatformOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422)},
)
def get_platform(platform_id: PlatformId, principal: AdminOrAuditor, c: ContainerDep) -> dict[str, Any]:
    """A platform's registration (never its secret)."""
    return registry.public_view(c.registry.get(platform_id))


@router.patch(
    "/{platform_id}",
    summary="Change webhook URL or representative (admin)",
    response_model=PlatformOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 409, 413, 415, 422, 503)},
)
def update_platform(platform_id: PlatformId, body: PlatformPatch, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """Only the fields sent change; `webhook_url: null` removes the webhook (the inbox remains)."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    if body.representative is not None and "representative" in changes:
        changes["representative"] = stored_representative(body.representative)
    return registry.public_view(c.registry.update(principal.key_id, platform_id, changes))


@router.post(
    "/{platform_id}/secret/rotate",
    summary="Rotate the webhook secret (admin)",
    response_model=PlatformWithSecretOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422, 503)},
)
def rotate_platform_secret(platform_id: PlatformId, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """A new secret; the old one keeps signing beside it for the overlap period."""
    row, secret = c.registry.rotate_secret(principal.key_id, platform_id)
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get(
    "/{platform_id}/history",
    summary="Every change to the registration, with its actor (admin, auditor)",
    response_model=list[PlatformChangeOut],
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422)},
)
def platform_history(platform_id: PlatformId, principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Registration, representative and webhook changes, secret rotations, disabled endpoints: oldest first."""
    return c.registry.history(platform_id)
