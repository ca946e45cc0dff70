"""A platform's registration as a fold of its events (pure): what the `platforms` table holds, rebuilt or live."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import reduce
from typing import Any

from shared.events import (
    Event,
    PlatformChanged,
    PlatformRegistered,
    PlatformSecretRotated,
    PlatformWebhookDisabled,
)

# The registration fields a PlatformChanged may carry (and the order history's "on record" shows, bar the flag).
REGISTRATION_FIELDS = ("name", "monthly_users", "representative", "webhook_url")


@dataclass(frozen=True)
class PlatformState:
    """A platform's registration after its events; `version` is its stream's version. Never holds a secret."""

    id: str
    name: str
    monthly_users: int
    representative: dict[str, Any]
    webhook_url: str | None
    webhook_enabled: bool
    webhook_disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    def row(self) -> dict[str, Any]:
        """The `platforms` row of this state."""
        return {k: v for k, v in self.__dict__.items() if k != "version"}


def apply(state: PlatformState | None, event: Event) -> PlatformState:
    """The registration after one more event (a stream starts with PlatformRegistered)."""
    if isinstance(event, PlatformRegistered):
        return PlatformState(
            id=event.platform_id,
            name=event.name,
            monthly_users=event.monthly_users,
            # As registered: whole, with no null phone (a PATCH replaces it in that same form).
            representative=event.representative.model_dump(mode="json", exclude_none=True),
            webhook_url=event.webhook_url,
            webhook_enabled=event.webhook_url is not None,
            webhook_disabled_reason=None,
            previous_secret_expires_at=None,
            created_at=event.registered_at,
            updated_at=event.registered_at,
            version=1,
        )
    if state is None:
        raise ValueError(f"a platform's stream must start with platform.registered, not {event.type}")
    state = replace(state, version=state.version + 1)
    if isinstance(event, PlatformChanged):
        fields: dict[str, Any] = {k: v for k, v in event.changes.items() if k in REGISTRATION_FIELDS}
        if "webhook_url" in event.changes:  # a new URL (or the same one sent again after a 410) enables delivery
            fields |= {"webhook_enabled": event.changes["webhook_url"] is not None, "webhook_disabled_reason": None}
        return replace(state, **fields, updated_at=event.changed_at)
    if isinstance(event, PlatformSecretRotated):
        return replace(state, previous_secret_expires_at=event.previous_valid_until, updated_at=event.rotated_at)
    if isinstance(event, PlatformWebhookDisabled):
        return replace(state, webhook_enabled=False, webhook_disabled_reason=event.reason, updated_at=event.disabled_at)
    raise ValueError(f"not a platform event: {event.type}")


def replay(events: Iterable[Event]) -> PlatformState | None:
    """The registration after these events, oldest first (None for an empty stream)."""
    empty: PlatformState | None = None
    return reduce(apply, events, empty)


def changes_of(state: PlatformState, sent: dict[str, Any]) -> dict[str, Any]:
    """What a change request really changes; a webhook URL sent again while delivery is disabled counts."""
    changed = {k: v for k, v in sent.items() if getattr(state, k) != v}
    if sent.get("webhook_url") is not None and not state.webhook_enabled:
        changed["webhook_url"] = sent["webhook_url"]
    return changed


def recorded_changes(changed: dict[str, Any]) -> dict[str, Any]:
    """The `changes` of the PlatformChanged event: the new values, and the delivery flag a new URL sets."""
    if "webhook_url" in changed:
        return {**changed, "webhook_enabled": changed["webhook_url"] is not None}
    return dict(changed)
