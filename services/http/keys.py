"""REST routes of API keys (admin): make, list, revoke, rotate. A key's plaintext appears only when it is made."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from fastapi import APIRouter, Response

from services.http.deps import ROLE_CHECKED, Admin, ContainerDep, KeyId
from services.http.problems import problem_responses
from services.http.schemas.keys import KeyCreatedOut, KeyIn, KeyOut, RotateIn
from services.keys.service import KeyRecord, KeyStatus
from shared.auth import Role

router = APIRouter(prefix="/v1/keys", tags=["keys"])

LOCATION = {"Location": {"description": "The new key's URL", "schema": {"type": "string"}}}


def _out(record: KeyRecord) -> KeyOut:
    return KeyOut.model_validate(asdict(record))


def _made(record: KeyRecord, plaintext: str) -> KeyCreatedOut:
    return KeyCreatedOut.model_validate({**asdict(record), "key": plaintext})


def _seconds(value: int | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None


@router.post(
    "",
    status_code=201,
    summary="Make an API key (admin); returns the key once",
    response_model=KeyCreatedOut,
    responses={
        201: {"description": "The key, made", "headers": LOCATION},
        **ROLE_CHECKED,
        **problem_responses(400, 413, 415, 422, 503),
    },
)
def create_api_key(body: KeyIn, principal: Admin, c: ContainerDep, response: Response) -> KeyCreatedOut:
    """A key of one role; an issuer key speaks for an authority, a platform key for a registered platform."""
    plaintext, made = c.keys.create(
        body.role,
        actor=principal.key_id,
        authority_id=getattr(body, "authority_id", None),
        authority_name=getattr(body, "authority_name", None),
        platform_id=getattr(body, "platform_id", None),
        label=body.label,
        expires_in=_seconds(body.expires_in_seconds),
    )
    response.headers["Location"] = f"/v1/keys/{made.id}"
    return _made(made, plaintext)


@router.get(
    "",
    summary="Every API key, newest first (admin); never a key itself",
    response_model=list[KeyOut],
    responses={**ROLE_CHECKED, **problem_responses(400, 422)},
)
def list_api_keys(
    principal: Admin, c: ContainerDep, status: KeyStatus | None = None, role: Role | None = None
) -> list[KeyOut]:
    """With `status` and `role`, only the keys of that status and role."""
    return [_out(r) for r in c.keys.list(status=status, role=role)]


@router.get(
    "/{key_id}",
    summary="One API key (admin)",
    response_model=KeyOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422)},
)
def get_api_key(key_id: KeyId, principal: Admin, c: ContainerDep) -> KeyOut:
    """Its role, tenant, status, expiry and last use."""
    return _out(c.keys.get(key_id))


@router.post(
    "/{key_id}/revoke",
    summary="Revoke an API key (admin): refused at once here, within auth_cache_s everywhere",
    response_model=KeyOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 422, 503)},
)
def revoke_api_key(key_id: KeyId, principal: Admin, c: ContainerDep) -> KeyOut:
    """Revoking a revoked key changes nothing (its first revocation time stays)."""
    return _out(c.keys.revoke(key_id, principal.key_id))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    summary="Replace an API key by a new one of the same role and tenant (admin); returns the new key once",
    response_model=KeyCreatedOut,
    responses={
        201: {"description": "The new key", "headers": LOCATION},
        **ROLE_CHECKED,
        **problem_responses(400, 404, 409, 413, 415, 422, 503),
    },
)
def rotate_api_key(
    key_id: KeyId, principal: Admin, c: ContainerDep, response: Response, body: RotateIn | None = None
) -> KeyCreatedOut:
    """The old key is revoked at once, or expires after `overlap_seconds`; a revoked or expired key is a 409."""
    asked = body or RotateIn()
    plaintext, made = c.keys.rotate(
        key_id,
        principal.key_id,
        expires_in=_seconds(asked.expires_in_seconds),
        overlap=timedelta(seconds=asked.overlap_seconds),
    )
    response.headers["Location"] = f"/v1/keys/{made.id}"
    return _made(made, plaintext)
