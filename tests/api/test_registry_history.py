"""The registry keeps its history as facts: who was on record at any moment can be shown; obliged platforms need a citizen."""

from __future__ import annotations

from typing import Any

from services.registry import service as registry
from tests.builders import platform_fields
from tests.support import Api

REP_KZ = {"name": "Aigerim N.", "citizenship": "KZ", "email": "rep@platform.kz"}
REP_OTHER = {"name": "John D.", "citizenship": "GB", "email": "john@platform.example"}


def _register(api: Api, users: int, rep: dict[str, Any], name: str = "Big") -> Any:
    return api.call("POST", "/v1/platforms", "admin", json=platform_fields(name, users, representative=rep))


def test_an_obliged_platform_must_name_a_citizen(api: Api) -> None:
    refused = _register(api, 100_001, REP_OTHER)
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "/problems/representative-refused"
    assert refused.headers["content-type"] == "application/problem+json"
    assert "Big" not in [p["name"] for p in api.call("GET", "/v1/platforms", "admin").json()], "nothing recorded"
    assert _register(api, 100_000, REP_OTHER, "Small").status_code == 201, "at the threshold: not obliged"
    assert _register(api, 100_001, REP_KZ).status_code == 201


def test_an_obliged_platform_cannot_swap_in_a_non_citizen_or_grow_past_the_threshold_without_one(api: Api) -> None:
    small = _register(api, 50_000, REP_OTHER, "Small").json()
    grow = api.call("PATCH", f"/v1/platforms/{small['id']}", "admin", json={"monthly_users": 150_000})
    # Valid requests that the current registration makes break the rule: conflicts with its state.
    assert grow.status_code == 409 and grow.json()["type"] == "/problems/representative-refused"
    swap = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"representative": REP_OTHER})
    assert swap.status_code == 409
    both = {"monthly_users": 150_000, "representative": REP_OTHER}
    assert api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json=both).status_code == 422
    assert api.call("GET", f"/v1/platforms/{api.platform_a}", "admin").json()["representative"]["citizenship"] == "KZ"


def test_history_records_each_change_with_its_actor_and_shows_who_was_on_record(api: Api) -> None:
    t_registered = api.clock.now()
    pid = _register(api, 200_000, REP_KZ).json()["id"]
    api.advance(hours=1)
    t_before_change = api.clock.now()
    api.advance(minutes=1)
    new_rep = {**REP_KZ, "name": "Dana K."}
    assert api.call("PATCH", f"/v1/platforms/{pid}", "admin", json={"representative": new_rep}).status_code == 200
    api.advance(hours=1)
    assert api.call("POST", f"/v1/platforms/{pid}/secret/rotate", "admin").status_code == 200
    with api.container.db.transaction() as conn:
        api.container.registry.disable_webhook(conn, pid, "410 Gone from the webhook endpoint", api.clock.now())
        history = registry.history(conn, pid)
        then = registry.on_record(conn, pid, t_before_change)
        now = registry.on_record(conn, pid, api.clock.now())
        at_registration = registry.on_record(conn, pid, t_registered)
    assert [h["type"] for h in history] == [
        "platform.registered",
        "platform.changed",
        "platform.secret_rotated",
        "platform.webhook_disabled",
    ]
    admin_key_id = history[0]["actor"]
    assert admin_key_id and admin_key_id != "system"
    assert [h["actor"] for h in history] == [admin_key_id] * 3 + ["system"]
    assert history[1]["data"]["changes"] == {"representative": new_rep}
    assert all("whsec" not in str(h["data"]) for h in history), "no secret is ever recorded"
    assert then["representative"]["name"] == "Aigerim N."
    assert at_registration["representative"]["name"] == "Aigerim N."
    assert now["representative"]["name"] == "Dana K."


def test_an_unchanged_patch_records_nothing(api: Api) -> None:
    before = _history(api, api.platform_a)
    same = api.call("GET", f"/v1/platforms/{api.platform_a}", "admin").json()["representative"]
    assert (
        api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"representative": same}).status_code == 200
    )
    assert _history(api, api.platform_a) == before


def _history(api: Api, pid: str) -> list[dict[str, Any]]:
    with api.container.db.read() as conn:
        return registry.history(conn, pid)


def test_history_over_http_is_for_admins_and_auditors(api: Api) -> None:
    api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": None, "monthly_users": 250_000})
    got = api.call("GET", f"/v1/platforms/{api.platform_a}/history", "auditor")
    assert got.status_code == 200
    assert [h["type"] for h in got.json()] == ["platform.registered", "platform.changed"]
    assert got.json()[1]["data"]["changes"] == {"monthly_users": 250_000}
    assert api.call("GET", f"/v1/platforms/{api.platform_a}/history", "platform_a").status_code == 403
    assert api.call("GET", "/v1/platforms/nope/history", "admin").status_code == 404
