"""A platform's registration as a fold of its events (pure, no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.registry.domain import apply, changes_of, recorded_changes, replay
from shared.events import (
    PlatformChanged,
    PlatformRegistered,
    PlatformSecretRotated,
    PlatformWebhookDisabled,
    Representative,
)
from tests.builders import T0

REP = Representative(name="Aigerim N.", citizenship="KZ", email="rep@platform.kz")
REGISTERED = PlatformRegistered(
    platform_id="p1",
    name="P",
    monthly_users=200_000,
    representative=REP,
    webhook_url="https://p.example/h",
    registered_at=T0,
)


def test_registration_starts_the_state_with_delivery_enabled_and_no_null_phone() -> None:
    state = replay([REGISTERED])
    assert state is not None
    assert (state.id, state.name, state.monthly_users, state.version) == ("p1", "P", 200_000, 1)
    assert state.representative == {"name": "Aigerim N.", "citizenship": "KZ", "email": "rep@platform.kz"}
    assert state.webhook_enabled and state.created_at == state.updated_at == T0
    assert "version" not in state.row() and state.row()["id"] == "p1"


def test_a_disabled_endpoint_is_enabled_again_by_a_new_url_and_rotation_sets_the_overlap() -> None:
    t1, t2, t3 = (T0 + timedelta(hours=h) for h in (1, 2, 3))
    disabled = replay([REGISTERED, PlatformWebhookDisabled(reason="410 Gone", disabled_at=t1)])
    assert disabled is not None and not disabled.webhook_enabled and disabled.webhook_disabled_reason == "410 Gone"
    sent = {"webhook_url": "https://p.example/h"}  # the same URL, sent again after the 410
    changed = changes_of(disabled, sent)
    assert changed == sent, "a URL sent again while delivery is disabled is a change"
    again = apply(disabled, PlatformChanged(changes=recorded_changes(changed), changed_at=t2))
    assert again.webhook_enabled and again.webhook_disabled_reason is None and again.updated_at == t2
    rotated = apply(again, PlatformSecretRotated(rotated_at=t3, previous_valid_until=t3 + timedelta(hours=24)))
    assert rotated.previous_secret_expires_at == t3 + timedelta(hours=24) and rotated.version == 4
    removed = apply(rotated, PlatformChanged(changes=recorded_changes({"webhook_url": None}), changed_at=t3))
    assert removed.webhook_url is None and not removed.webhook_enabled


def test_an_unchanged_field_is_no_change_and_a_stream_must_start_with_the_registration() -> None:
    state = replay([REGISTERED])
    assert state is not None
    assert changes_of(state, {"name": "P", "monthly_users": 200_000}) == {}
    assert replay([]) is None
    with pytest.raises(ValueError, match=r"must start with platform\.registered"):
        apply(None, PlatformWebhookDisabled(reason="x", disabled_at=T0))
