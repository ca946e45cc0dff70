"""The platform registry: register platforms and their representatives, change them, rotate webhook secrets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from services.registry.tables import platforms
from services.webhooks.safety import is_allowed_destination
from services.webhooks.signing import generate_secret
from shared.events import Representative
from shared.ids import new_id


class RegistryError(Exception):
    """Base of the registry's refusals. `code` is stable; the message is for people."""

    code = "registry-error"


class PlatformNotFound(RegistryError):
    """No platform has this id."""

    code = "not-found"

    def __init__(self) -> None:
        super().__init__("no such platform")


class PlatformNameTaken(RegistryError):
    """Another platform is registered under this name."""

    code = "platform-exists"


class WebhookUrlRefused(RegistryError):
    """The webhook URL is malformed or points at an address the service must not call."""

    code = "webhook-url-refused"


def check_webhook_url(url: str | None, allow_list: list[str]) -> None:
    """Refuse a webhook URL that is malformed or resolves to a private, loopback or link-local address."""
    if url is None:
        return
    ok, reason = is_allowed_destination(url, allow_list)
    if not ok:
        raise WebhookUrlRefused(reason)


def _name_free(conn: Connection, name: str, platform_id: str | None = None) -> None:
    # Checked first for a clear refusal; a concurrent registration of the same name still meets the unique key.
    taken = conn.execute(select(platforms.c.id).where(platforms.c.name == name)).first()
    if taken is not None and taken.id != platform_id:
        raise PlatformNameTaken(f"a platform named {name!r} is already registered")


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
    _name_free(conn, fields["name"])
    secret = generate_secret()
    platform_id = new_id()
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
    return get(conn, platform_id), secret


def get(conn: Connection, platform_id: str) -> Any:
    """A platform's row, or PlatformNotFound."""
    row = conn.execute(select(platforms).where(platforms.c.id == platform_id)).first()
    if row is None:
        raise PlatformNotFound()
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
    if "name" in changes:
        _name_free(conn, changes["name"], platform_id)
    if "webhook_url" in changes:
        changes = {**changes, "webhook_enabled": changes["webhook_url"] is not None, "webhook_disabled_reason": None}
    conn.execute(platforms.update().where(platforms.c.id == platform_id).values(**changes, updated_at=now))
    return get(conn, platform_id)


def rotate_secret(conn: Connection, platform_id: str, now: datetime, overlap: timedelta) -> tuple[Any, str]:
    """Give a platform a new secret; the old one keeps signing beside it until the overlap ends."""
    # Lock the row: two concurrent rotations would otherwise both keep the same "previous" secret.
    row = conn.execute(select(platforms).where(platforms.c.id == platform_id).with_for_update()).first()
    if row is None:
        raise PlatformNotFound()
    secret = generate_secret()
    conn.execute(
        platforms.update()
        .where(platforms.c.id == platform_id)
        .values(secret=secret, previous_secret=row.secret, previous_secret_expires_at=now + overlap, updated_at=now)
    )
    return get(conn, platform_id), secret


def representative_of(stored: Any) -> Representative | None:
    """The representative as an order's history records it, from the registry's stored form (None if absent)."""
    if not isinstance(stored, dict) or not stored.get("name"):
        return None
    return Representative(
        name=stored["name"], citizenship=stored.get("citizenship"), email=stored.get("email"), phone=stored.get("phone")
    )


@dataclass(frozen=True)
class OnRecord:
    """Who and where a platform is notified at, as registered now: its representative and its webhook URL."""

    platform_id: str
    representative: Representative | None
    webhook_url: str | None


def on_record(conn: Connection, platform_id: str) -> OnRecord | None:
    """A platform's current representative and webhook URL (None: no such platform)."""
    row = conn.execute(
        select(platforms.c.representative, platforms.c.webhook_url).where(platforms.c.id == platform_id)
    ).first()
    if row is None:
        return None
    return OnRecord(platform_id, representative_of(row.representative), row.webhook_url)


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where and how to push to a platform: its webhook URL, whether it is enabled, its signing secrets, and the
    representative on record when it was read (a delivery records both URL and representative)."""

    platform_id: str
    url: str | None
    enabled: bool
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None
    representative: Representative | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with now: the current one, and the previous one during its overlap."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


def endpoints(conn: Connection, platform_ids: Iterable[str]) -> dict[str, WebhookEndpoint]:
    """The webhook endpoints of these platforms, by platform id (unknown ids are absent)."""
    ids = set(platform_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(
            platforms.c.id,
            platforms.c.webhook_url,
            platforms.c.webhook_enabled,
            platforms.c.secret,
            platforms.c.previous_secret,
            platforms.c.previous_secret_expires_at,
            platforms.c.representative,
        ).where(platforms.c.id.in_(ids))
    )
    return {r.id: WebhookEndpoint(*r[:6], representative=representative_of(r.representative)) for r in rows}


def disable_webhook(conn: Connection, platform_id: str, reason: str, now: datetime) -> None:
    """Stop pushing to a platform's endpoint (it answered 410 Gone); the inbox remains."""
    conn.execute(
        platforms.update()
        .where(platforms.c.id == platform_id)
        .values(webhook_enabled=False, webhook_disabled_reason=reason, updated_at=now)
    )
