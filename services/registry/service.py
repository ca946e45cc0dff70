"""The platform registry: register platforms and their representatives, change them, rotate webhook secrets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from services.notifier.signing import generate_secret
from services.registry.tables import platforms
from shared.ids import new_id
from shared.problems import NotFound, Problem


def public_view(row: Any) -> dict[str, Any]:
    """A platform as the API shows it: never its secrets."""
    return {
        "id": row.id,
        "name": row.name,
        "monthly_users": row.monthly_users,
        "representative": row.representative,
        "webhook_url": row.webhook_url,
        "webhook_enabled": row.webhook_enabled,
        "webhook_disabled_reason": row.webhook_disabled_reason,
        "secret_rotation_overlap_until": row.previous_secret_expires_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def register(conn: Connection, fields: dict[str, Any], now: datetime) -> tuple[Any, str]:
    """Add a platform; returns its row and its webhook secret (shown once)."""
    secret = generate_secret()
    platform_id = new_id()
    try:
        with conn.begin_nested():
            conn.execute(
                platforms.insert().values(
                    id=platform_id,
                    secret=secret,
                    webhook_enabled=fields.get("webhook_url") is not None,
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
            )
    except IntegrityError as exc:
        raise Problem(409, "platform-exists", "Platform already registered", f"{fields['name']!r} exists") from exc
    return get(conn, platform_id), secret


def get(conn: Connection, platform_id: str) -> Any:
    """A platform's row, or NotFound."""
    row = conn.execute(select(platforms).where(platforms.c.id == platform_id)).first()
    if row is None:
        raise NotFound("platform")
    return row


def find(conn: Connection, platform_id: str) -> Any | None:
    """A platform's row, or None."""
    return conn.execute(select(platforms).where(platforms.c.id == platform_id)).first()


def list_all(conn: Connection) -> list[Any]:
    """Every platform, by name."""
    return list(conn.execute(select(platforms).order_by(platforms.c.name)))


def update(conn: Connection, platform_id: str, changes: dict[str, Any], now: datetime) -> Any:
    """Change a platform's registration; a new webhook URL re-enables delivery."""
    get(conn, platform_id)
    if "webhook_url" in changes:
        changes = {**changes, "webhook_enabled": changes["webhook_url"] is not None, "webhook_disabled_reason": None}
    try:
        with conn.begin_nested():
            conn.execute(platforms.update().where(platforms.c.id == platform_id).values(**changes, updated_at=now))
    except IntegrityError as exc:
        raise Problem(409, "platform-exists", "Platform name taken", "another platform has this name") from exc
    return get(conn, platform_id)


def rotate_secret(conn: Connection, platform_id: str, now: datetime, overlap: timedelta) -> tuple[Any, str]:
    """Give a platform a new secret; the old one keeps signing beside it until the overlap ends."""
    # Lock the row: two concurrent rotations would otherwise both keep the same "previous" secret.
    row = conn.execute(select(platforms).where(platforms.c.id == platform_id).with_for_update()).first()
    if row is None:
        raise NotFound("platform")
    secret = generate_secret()
    conn.execute(
        platforms.update()
        .where(platforms.c.id == platform_id)
        .values(secret=secret, previous_secret=row.secret, previous_secret_expires_at=now + overlap, updated_at=now)
    )
    return get(conn, platform_id), secret


def signing_secrets(row: Any, now: datetime) -> list[str]:
    """The secrets to sign with now: the current one, and the previous one during its overlap."""
    expires = row.previous_secret_expires_at
    if row.previous_secret and expires is not None:
        if expires.tzinfo is None:  # SQLite returns naive datetimes; everything stored is UTC
            expires = expires.replace(tzinfo=now.tzinfo)
        if expires > now:
            return [row.secret, row.previous_secret]
    return [row.secret]


def disable_webhook(conn: Connection, platform_id: str, reason: str, now: datetime) -> None:
    """Stop pushing to a platform's endpoint (it answered 410 Gone); the inbox remains."""
    conn.execute(
        platforms.update()
        .where(platforms.c.id == platform_id)
        .values(webhook_enabled=False, webhook_disabled_reason=reason, updated_at=now)
    )
