"""The platform registry: register platforms and their representatives, change them, rotate webhook secrets.

The `platforms` table is the current registration; every change is also a fact in the platform's stream of the
event store (`platform-<id>`, with the actor), so who was on record at any moment can be shown, and the ledger
covers it like every other event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from services.registry.tables import platforms
from services.webhooks.safety import is_allowed_destination
from services.webhooks.signing import generate_secret
from shared.events import (
    Event,
    PlatformChanged,
    PlatformRegistered,
    PlatformSecretRotated,
    PlatformWebhookDisabled,
    Representative,
    load_event,
)
from shared.eventstore import EventStore, NewEvent
from shared.ids import new_id

# The law obliges platforms with more than this many users to name a local representative who is a Kazakh citizen.
OBLIGED_ABOVE_USERS = 100_000
CITIZENSHIP = "KZ"


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


class RepresentativeRefused(RegistryError):
    """An obliged platform's representative must be a Kazakh citizen."""

    code = "representative-refused"


def stream_id(platform_id: str) -> str:
    """The platform's stream in the event store."""
    return f"platform-{platform_id}"


def _record(conn: Connection, platform_id: str, event: Event, actor: str, now: datetime) -> None:
    """Append a fact to the platform's stream, in the caller's transaction (a race is a ConcurrencyError)."""
    store = EventStore(conn.dialect.name)  # stateless: the dialect picks the SQL
    stream = stream_id(platform_id)
    store.append(conn, stream, store.stream_version(conn, stream), [NewEvent.of(event, {"actor": actor})], now)


def _check_representative(monthly_users: int, representative: dict[str, Any], obliged_above: int) -> None:
    if monthly_users > obliged_above and representative.get("citizenship") != CITIZENSHIP:
        raise RepresentativeRefused(
            f"a platform with more than {obliged_above:,} users must name a representative who is a Kazakh citizen"
        )


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


def register(
    conn: Connection,
    fields: dict[str, Any],
    now: datetime,
    *,
    actor: str = "system",
    obliged_above: int = OBLIGED_ABOVE_USERS,
) -> tuple[Any, str]:
    """Add a platform; returns its row and its webhook secret (shown once)."""
    _name_free(conn, fields["name"])
    _check_representative(fields["monthly_users"], fields["representative"], obliged_above)
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
    registered = PlatformRegistered(
        platform_id=platform_id,
        name=fields["name"],
        monthly_users=fields["monthly_users"],
        representative=Representative(**fields["representative"]),
        webhook_url=fields.get("webhook_url"),
        registered_at=now,
    )
    _record(conn, platform_id, registered, actor, now)
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


def update(
    conn: Connection,
    platform_id: str,
    changes: dict[str, Any],
    now: datetime,
    *,
    actor: str = "system",
    obliged_above: int = OBLIGED_ABOVE_USERS,
) -> Any:
    """Change a platform's registration; a new webhook URL re-enables delivery."""
    row = get(conn, platform_id)
    changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if changes.get("webhook_url") is not None and not row.webhook_enabled:
        changed["webhook_url"] = changes["webhook_url"]  # sent again after a 410: delivery is enabled again
    if "name" in changed:
        _name_free(conn, changed["name"], platform_id)
    _check_representative(
        changed.get("monthly_users", row.monthly_users),
        changed.get("representative", row.representative),
        obliged_above,
    )
    if not changed:
        return row
    values = dict(changed)
    if "webhook_url" in changed:
        values |= {"webhook_enabled": changed["webhook_url"] is not None, "webhook_disabled_reason": None}
    conn.execute(platforms.update().where(platforms.c.id == platform_id).values(**values, updated_at=now))
    recorded = {k: v for k, v in values.items() if k != "webhook_disabled_reason"}
    _record(conn, platform_id, PlatformChanged(changes=recorded, changed_at=now), actor, now)
    return get(conn, platform_id)


def rotate_secret(
    conn: Connection, platform_id: str, now: datetime, overlap: timedelta, *, actor: str = "system"
) -> tuple[Any, str]:
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
    _record(conn, platform_id, PlatformSecretRotated(rotated_at=now, previous_valid_until=now + overlap), actor, now)
    return get(conn, platform_id), secret


def representative_of(stored: Any) -> Representative | None:
    """The representative as an order's history records it, from the registry's stored form (None if unusable)."""
    if not isinstance(stored, dict):
        return None
    try:
        return Representative.model_validate({k: stored[k] for k in Representative.model_fields if k in stored})
    except ValidationError:
        return None


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


def disable_webhook(conn: Connection, platform_id: str, reason: str, now: datetime, *, actor: str = "system") -> None:
    """Stop pushing to a platform's endpoint (it answered 410 Gone); the inbox remains."""
    conn.execute(
        platforms.update()
        .where(platforms.c.id == platform_id)
        .values(webhook_enabled=False, webhook_disabled_reason=reason, updated_at=now)
    )
    _record(conn, platform_id, PlatformWebhookDisabled(reason=reason, disabled_at=now), actor, now)


def history(conn: Connection, platform_id: str) -> list[dict[str, Any]]:
    """Every recorded change of a platform's registration, oldest first, with who made it."""
    get(conn, platform_id)
    store = EventStore(conn.dialect.name)
    return [
        {
            "type": e.type,
            "recorded_at": e.recorded_at,
            "actor": e.meta.get("actor"),
            "position": e.position,
            "data": e.data,
        }
        for e in store.read_stream(conn, stream_id(platform_id))
    ]


def on_record(conn: Connection, platform_id: str, at: datetime) -> dict[str, Any]:
    """The registration as it stood at `at`: name, users, representative and webhook URL (replayed from history)."""
    get(conn, platform_id)
    state: dict[str, Any] = {}
    for e in EventStore(conn.dialect.name).read_stream(conn, stream_id(platform_id)):
        if e.recorded_at > at:
            break
        event = load_event(e.type, e.schema_version, e.data)
        if isinstance(event, PlatformRegistered):
            state = event.model_dump(mode="json", include={"name", "monthly_users", "representative", "webhook_url"})
        elif isinstance(event, PlatformChanged):
            state |= {
                k: v
                for k, v in event.changes.items()
                if k in ("name", "monthly_users", "representative", "webhook_url")
            }
    return state
