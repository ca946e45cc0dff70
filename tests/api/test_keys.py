"""API keys' lifecycle over the admin API and the CLI: expiry, revocation, rotation, last use, the demo's keys."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from services.bootstrap import bootstrap
from services.cli import _demo, cli, demo_keys_file
from shared.auth import api_keys
from shared.clock import FrozenClock
from tests.builders import T0, service_settings
from tests.support import Api


def _make(api: Api, **body: object) -> dict:
    r = api.call("POST", "/v1/keys", "admin", json={"role": "issuer", "authority_id": "mci", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _as(api: Api, key: str, path: str = "/v1/orders") -> int:
    return int(api.client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code)


def test_a_key_is_shown_once_and_never_listed(api: Api) -> None:
    made = _make(api, label="desk 4")
    assert made["key"].startswith("tdk_") and made["status"] == "active"
    assert _as(api, made["key"]) == 200
    listed = api.call("GET", "/v1/keys", "admin")
    assert listed.status_code == 200 and made["key"] not in listed.text
    assert made["id"] in {k["id"] for k in listed.json()}
    assert "key" not in api.call("GET", f"/v1/keys/{made['id']}", "admin").json()
    with api.container.db.read() as conn:  # stored only as a hash
        assert made["key"] not in str(conn.execute(select(api_keys)).all())


def test_an_expired_key_is_refused_at_once_even_when_cached(api: Api) -> None:
    made = _make(api, expires_in_seconds=3600)
    assert _as(api, made["key"]) == 200  # checked, and now cached
    api.advance(seconds=3600)
    assert _as(api, made["key"]) == 401
    assert api.call("GET", f"/v1/keys/{made['id']}", "admin").json()["status"] == "expired"
    assert [k["id"] for k in api.call("GET", "/v1/keys?status=expired", "admin").json()] == [made["id"]]


def test_a_key_revoked_over_the_api_is_refused_at_once(api: Api) -> None:
    made = _make(api)
    assert _as(api, made["key"]) == 200
    r = api.call("POST", f"/v1/keys/{made['id']}/revoke", "admin")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert _as(api, made["key"]) == 401
    assert api.call("POST", "/v1/keys/nope/revoke", "admin").status_code == 404


def test_rotation_keeps_role_tenant_and_lifetime_and_ends_the_old_key(api: Api) -> None:
    old = _make(api, expires_in_seconds=7200, label="ops")
    assert _as(api, old["key"]) == 200
    api.advance(seconds=600)
    r = api.call("POST", f"/v1/keys/{old['id']}/rotate", "admin")
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["role"], new["authority_id"], new["label"], new["rotated_from"]) == ("issuer", "mci", "ops", old["id"])
    assert api.call("GET", f"/v1/keys/{new['id']}", "admin").json()["expires_at"] > old["expires_at"]
    assert _as(api, old["key"]) == 401 and _as(api, new["key"]) == 200
    again = api.call("POST", f"/v1/keys/{old['id']}/rotate", "admin")
    assert again.status_code == 409 and again.json()["type"] == "/problems/key-not-active"


def test_rotation_with_an_overlap_lets_the_old_key_work_that_long(api: Api) -> None:
    old = _make(api)
    new = api.call("POST", f"/v1/keys/{old['id']}/rotate", "admin", json={"overlap_seconds": 60}).json()
    assert _as(api, old["key"]) == 200 and _as(api, new["key"]) == 200
    api.advance(seconds=60)
    assert _as(api, old["key"]) == 401 and _as(api, new["key"]) == 200


def test_last_use_is_written_at_most_once_per_interval(api: Api) -> None:
    made = _make(api)

    def last_used() -> object:
        return api.call("GET", f"/v1/keys/{made['id']}", "admin").json()["last_used_at"]

    assert last_used() is None
    _as(api, made["key"])
    first = last_used()
    assert first is not None
    every = api.container.keys.last_used_every
    api.advance(seconds=every.total_seconds() / 2)  # the cache has expired (5 s): read again, but not written
    _as(api, made["key"])
    assert last_used() == first
    api.advance(seconds=every.total_seconds())
    _as(api, made["key"])
    assert last_used() != first


def test_a_platform_key_needs_a_registered_platform(api: Api) -> None:
    r = api.call("POST", "/v1/keys", "admin", json={"role": "platform", "platform_id": "no-such-platform"})
    assert r.status_code == 422 and r.json()["type"] == "/problems/key-refused"
    r = api.call("POST", "/v1/keys", "admin", json={"role": "issuer"})  # the schema says an issuer needs one
    assert r.status_code == 422


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.conftest import fresh_sqlite_url

    url = fresh_sqlite_url(sqlite_template, tmp_path)
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", url)
    monkeypatch.setenv("TAKEDOWN_ENVIRONMENT", "test")
    return url


def test_the_cli_makes_lists_rotates_and_revokes(sqlite_url: str) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--role", "admin", "--label", "ops", "--expires-in", "30d"])
    assert made.exit_code == 0, made.output
    plaintext = made.output.strip()
    listed = runner.invoke(cli, ["keys", "list", "--json"])
    assert listed.exit_code == 0 and plaintext not in listed.output
    import json

    [row] = json.loads(listed.output)
    assert row["status"] == "active" and row["expires_at"] is not None and row["label"] == "ops"
    rotated = runner.invoke(cli, ["keys", "rotate", row["id"]])
    assert rotated.exit_code == 0, rotated.output
    assert runner.invoke(cli, ["keys", "rotate", row["id"]]).exit_code == 1  # revoked by the rotation
    table = runner.invoke(cli, ["keys", "list", "--status", "active"])
    assert table.exit_code == 0 and "ops" in table.output and row["id"] not in table.output
    new_id = json.loads(runner.invoke(cli, ["keys", "list", "--json", "--status", "active"]).output)[0]["id"]
    assert runner.invoke(cli, ["keys", "revoke", new_id]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["keys", "list", "--json", "--status", "active"]).output) == []
    assert runner.invoke(cli, ["keys", "revoke", "nope"]).exit_code == 1
    assert runner.invoke(cli, ["keys", "create", "--role", "admin", "--expires-in", "soon"]).exit_code == 2
    assert runner.invoke(cli, ["keys", "create", "--role", "platform", "--platform", "nope"]).exit_code == 2


def test_the_demo_reuses_its_keys_across_restarts(sqlite_url: str) -> None:
    settings = service_settings(sqlite_url)
    first = bootstrap(settings, clock=FrozenClock(T0))
    try:
        before = _demo(first)
    finally:
        first.close()
    path = demo_keys_file(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = bootstrap(settings, clock=FrozenClock(T0 + timedelta(hours=1)))
    try:
        after = _demo(second)
        assert after["keys"] == before["keys"] and sorted(after["reused"]) == sorted(before["keys"])
        assert len(second.keys.list(role="admin")) == 1  # no new admin key per start
        # A demo key revoked by hand is replaced, the others kept.
        admin = second.keys.valid(before["keys"]["admin"])
        assert admin is not None
        second.keys.revoke(admin.key_id, "test")
        third = _demo(second)
        assert third["keys"]["admin"] != before["keys"]["admin"] and third["reused"] == [
            "issuer",
            "platform",
            "auditor",
        ]
        # A file others could read: its keys are revoked and replaced.
        os.chmod(path, 0o644)
        fourth = _demo(second)
        assert fourth["reused"] == [] and second.keys.valid(third["keys"]["issuer"]) is None
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        second.close()
