"""REST routes of the platform registry (admin writes; admin and auditor read)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response

from services.http.deps import ROLE_CHECKED, Admin, AdminOrAuditor, ContainerDep, PlatformId
from services.http.problems import Problem, problem_responses
from services.http.schemas.platforms import (
    PlatformChangeOut,
    PlatformIn,
    PlatformOut,
    PlatformPatch,
    PlatformWithSecretOut,
    Representative,
)
from services.registry import service as registry
from services.registry.service import RepresentativeRefused

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
        **problem_responses(400, 409, 413, 422, 503),
    },
)
def register_platform(body: PlatformIn, principal: Admin, c: ContainerDep, response: Response) -> dict[str, Any]:
    """Register a platform and its local representative."""
    registry.check_webhook_url(body.webhook_url, c.settings.webhook_allow_list)
    with c.db.transaction() as conn:
        row, secret = registry.register(
            conn,
            {**body.model_dump(mode="json"), "representative": stored_representative(body.representative)},
            c.clock.now(),
            actor=principal.key_id,
            obliged_above=c.settings.obliged_monthly_users,
        )
    response.headers["Location"] = f"/v1/platforms/{row.id}"
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get("", summary="The registry", response_model=list[PlatformOut], responses=ROLE_CHECKED)
def list_platforms(principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Every registered platform."""
    with c.db.read() as conn:
        return [registry.public_view(r) for r in registry.list_all(conn)]


@router.get(
    "/{platform_id}",
    summary="One platform",
    response_model=PlatformOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422)},
)
def get_platform(platform_id: PlatformId, principal: AdminOrAuditor, c: ContainerDep) -> dict[str, Any]:
    """A platform's registration (never its secret)."""
    with c.db.read() as conn:
        return registry.public_view(registry.get(conn, platform_id))


@router.patch(
    "/{platform_id}",
    summary="Change webhook URL or representative (admin)",
    response_model=PlatformOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 409, 413, 422, 503)},
)
def update_platform(platform_id: PlatformId, body: PlatformPatch, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """Only the fields sent change; `webhook_url: null` removes the webhook (the inbox remains)."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    if body.representative is not None and "representative" in changes:
        changes["representative"] = stored_representative(body.representative)
    if "webhook_url" in changes:
        registry.check_webhook_url(changes["webhook_url"], c.settings.webhook_allow_list)
    try:
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
    except RepresentativeRefused as exc:
        if {"monthly_users", "representative"} <= changes.keys():
            raise  # the request itself breaks the rule, as the schema says: 422
        # A valid request that the platform's current registration makes break the rule: a conflict with its state.
        raise Problem(409, exc.code, "Conflicts with the registration", str(exc)) from exc


@router.post(
    "/{platform_id}/secret/rotate",
    summary="Rotate the webhook secret (admin)",
    response_model=PlatformWithSecretOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422, 503)},
)
def rotate_platform_secret(platform_id: PlatformId, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """A new secret; the old one keeps signing beside it for the overlap period."""
    overlap = timedelta(hours=c.settings.secret_overlap_hours)
    with c.db.transaction() as conn:
        row, secret = registry.rotate_secret(conn, platform_id, c.clock.now(), overlap, actor=principal.key_id)
    return {**registry.public_view(row), "webhook_secret": secret}


@router.get(
    "/{platform_id}/history",
    summary="Every change to the registration, with its actor (admin, auditor)",
    response_model=list[PlatformChangeOut],
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422)},
)
def platform_history(platform_id: PlatformId, principal: AdminOrAuditor, c: ContainerDep) -> list[dict[str, Any]]:
    """Registration, representative and webhook changes, secret rotations, disabled endpoints: oldest first."""
    with c.db.read() as conn:
        return registry.history(conn, platform_id)
