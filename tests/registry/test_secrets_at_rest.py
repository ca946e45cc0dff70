"""Webhook signing secrets at rest (each backend): sealed with a KEK held outside the database, shown once, in no
response, log line or evidence bundle after that; plaintext rows are sealed; `takedown secrets rotate-kek`
re-seals every row in one transaction and deliveries still verify with the platform's secret."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from services.cli import cli
from services.notifier.worker import NotifierConfig
from services.registry import service as registry
from services.registry.errors import SecretsKeyError
from services.registry.kek import Kek, Keyring, key_id, keyring_from_settings, load_kek
from shared.settings import Settings
from tests.builders import TEST_KEK, platform_fields
from tests.logcapture import json_logs
from tests.notifier.receiver import Receiver, Respond
from tests.notifier.test_delivery import drain
from tests.support import Api

TEST_KEK_ID = key_id(base64.b64decode(TEST_KEK))


@pytest.fixture(autouse=True)
def _keys_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger key of these tests' containers in the test's folder (never ./ledger.key)."""
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    monkeypatch.delenv("TAKEDOWN_LEDGER_KEY", raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def api(api: Api) -> Api:
    """The app with its frozen clock at the real time (receivers check webhook-timestamp against it)."""
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    return api


def stored(api: Api) -> list[tuple[str, str, str | None]]:
    """The secrets table as the database holds it (raw SQL: no code of the registry in between)."""
    with api.container.db.read() as conn:
        rows = conn.execute(
            text("SELECT platform_id, secret, previous_secret FROM platform_secrets ORDER BY platform_id")
        )
        return [(r[0], r[1], r[2]) for r in rows]


def traces_of(secret: str) -> list[str]:
    """The forms a secret could leak in: itself, its base64 key, and the key's bytes in hex and url-safe base64."""
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded)
    return [secret, encoded, key.hex(), base64.urlsafe_b64encode(key).decode().rstrip("=")]


def run_cli(db_url: str, *args: str, kek: str | None = TEST_KEK) -> Any:
    env = {"TAKEDOWN_DATABASE_URL": db_url, "TAKEDOWN_ENVIRONMENT": "test"}
    if kek is not None:
        env["TAKEDOWN_SECRETS_KEK"] = kek
    return CliRunner().invoke(cli, ["secrets", *args], env=env)


def db_url_of(api: Api) -> str:
    return api.container.db.engine.url.render_as_string(hide_password=False)


# --------------------------------------------------------------------------------------- the column, raw


def test_the_secrets_column_holds_no_plaintext(api: Api) -> None:
    made = api.call("POST", "/v1/platforms", "admin", json=platform_fields("C", webhook_url="http://127.0.0.1:9/h"))
    assert made.status_code == 201, made.text
    pid, first = made.json()["id"], made.json()["webhook_secret"]
    rotated = api.call("POST", f"/v1/platforms/{pid}/secret/rotate", "admin").json()["webhook_secret"]
    rows = stored(api)
    assert len(rows) == 3  # A and B of the fixture, and C
    raw = json.dumps(rows)
    for secret in (first, rotated):
        assert not any(trace in raw for trace in traces_of(secret))
    assert "whsec_" not in raw
    for _pid, secret, previous in rows:
        for value in (secret, previous) if previous is not None else (secret,):
            assert value.startswith(f"sealed:v1:{TEST_KEK_ID}:"), value
    # ... and they open to what the platform was given.
    with api.container.db.read() as conn:
        endpoint = registry.endpoints(conn, [pid], api.container.registry.keyring())[pid]
    assert (endpoint.secret, endpoint.previous_secret) == (rotated, first)


def test_plaintext_rows_from_before_sealing_are_read_and_then_sealed(api: Api) -> None:
    legacy, older = "whsec_" + base64.b64encode(b"l" * 32).decode(), "whsec_" + base64.b64encode(b"o" * 32).decode()
    with api.container.db.transaction() as conn:
        conn.execute(
            text("UPDATE platform_secrets SET secret = :s, previous_secret = :p WHERE platform_id = :id"),
            {"s": legacy, "p": older, "id": api.platform_a},
        )
    keyring = api.container.registry.keyring()
    with api.container.db.read() as conn:
        assert registry.endpoints(conn, [api.platform_a], keyring)[api.platform_a].secret == legacy
    assert api.container.registry.seal_stored() == 1
    assert api.container.registry.seal_stored() == 0  # idempotent: every process seals at start
    assert "whsec_" not in json.dumps(stored(api))
    with api.container.db.read() as conn:
        endpoint = registry.endpoints(conn, [api.platform_a], keyring)[api.platform_a]
    assert (endpoint.secret, endpoint.previous_secret) == (legacy, older)


def test_secrets_seal_command_seals_plaintext_rows(api: Api) -> None:
    with api.container.db.transaction() as conn:
        conn.execute(text("UPDATE platform_secrets SET secret = 'whsec_AAAA'"))
    result = run_cli(db_url_of(api), "seal")
    assert result.exit_code == 0, result.output
    assert "sealed 2 platform secrets" in result.output
    assert all(secret.startswith("sealed:v1:") for _, secret, _ in stored(api))


# -------------------------------------------------------------------------------------------- rotate-kek


async def test_rotate_kek_reseals_every_row_and_deliveries_still_verify(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport, tmp_path: Path
) -> None:
    r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": receiver.url("/hook")})
    assert r.status_code == 200, r.text
    secret = api.call("POST", f"/v1/platforms/{api.platform_a}/secret/rotate", "admin").json()["webhook_secret"]
    before = stored(api)

    new_file = tmp_path / "kek" / "new.kek"
    result = run_cli(db_url_of(api), "rotate-kek", "--new-file", str(new_file))
    assert result.exit_code == 0, result.output
    new = load_kek(None, str(new_file), create=False)
    assert stat.S_IMODE(os.stat(new_file).st_mode) == 0o600
    assert f"re-sealed 2 platform secrets under KEK {new.id}" in result.output
    after = stored(api)
    assert all(s.startswith(f"sealed:v1:{new.id}:") for _, s, _ in after)
    assert [row[0] for row in after] == [row[0] for row in before] and after != before

    # The old KEK alone opens nothing now; the new one alone opens everything.
    with api.container.db.read() as conn, pytest.raises(SecretsKeyError, match="not held"):
        registry.endpoints(conn, [api.platform_a], Keyring(Kek(base64.b64decode(TEST_KEK))))
    api.container.notifier.keyring = lambda: Keyring(new)
    receiver.script("/hook", Respond(200))
    api.container.notifier.config = NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",))
    api.issue()
    assert await drain(api.container.notifier, pool) == 1
    [request] = receiver.requests("/hook")
    Webhook(secret).verify(request.body, request.headers)


def test_rotate_kek_changes_nothing_if_one_row_does_not_open(api: Api, tmp_path: Path) -> None:
    stranger = Keyring(Kek(b"s" * 32))
    with api.container.db.transaction() as conn:
        conn.execute(
            text("UPDATE platform_secrets SET secret = :s WHERE platform_id = :id"),
            {"s": stranger.seal("whsec_AAAA", api.platform_b), "id": api.platform_b},
        )
    before = stored(api)
    result = run_cli(db_url_of(api), "rotate-kek", "--new-file", str(tmp_path / "new.kek"))
    assert result.exit_code == 1 and "not held" in result.output
    assert stored(api) == before  # one transaction: platform A's row was not re-sealed either


def test_rotate_kek_with_explicit_old_files(api: Api, tmp_path: Path) -> None:
    old = tmp_path / "old.kek"
    old.write_text(TEST_KEK + "\n")
    result = run_cli(
        db_url_of(api), "rotate-kek", "--old-file", str(old), "--new-file", str(tmp_path / "new.kek"), kek=None
    )
    assert result.exit_code == 0, result.output
    assert "re-sealed 2 platform secrets" in result.output


# ------------------------------------------------------------------------------- shown once, nowhere else


async def test_a_secret_is_in_no_later_response_log_line_or_evidence_bundle(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    seen: list[str] = []
    with json_logs("DEBUG") as lines:
        made = api.call(
            "POST", "/v1/platforms", "admin", json=platform_fields("Hooked", webhook_url=receiver.url("/hook"))
        )
        assert made.status_code == 201, made.text
        pid, first = made.json()["id"], made.json()["webhook_secret"]
        rotation = api.call("POST", f"/v1/platforms/{pid}/secret/rotate", "admin")
        second = rotation.json()["webhook_secret"]
        receiver.script("/hook", Respond(200))
        api.container.notifier.config = NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",))
        order_id = api.issue(platform=pid).json()["id"]
        assert await drain(api.container.notifier, pool) == 1
        api.container.sequencer.catch_up()
        for path in (
            f"/v1/platforms/{pid}",
            "/v1/platforms",
            f"/v1/platforms/{pid}/history",
            f"/v1/orders/{order_id}",
            f"/v1/orders/{order_id}/events",
            f"/v1/deliveries?order_id={order_id}",
            f"/v1/orders/{order_id}/evidence",
        ):
            r = api.call("GET", path, "admin")
            assert r.status_code == 200, (path, r.text)
            seen.append(r.text)
    [request] = receiver.requests("/hook")
    Webhook(second).verify(request.body, request.headers)  # the secret that was shown is the one that signs
    Webhook(first).verify(request.body, request.headers)  # ... and the previous one during the overlap
    logged = json.dumps(lines.all())
    assert logged.count("request finished") >= 10  # the lines were captured
    for secret in (first, second):
        for trace in traces_of(secret):
            assert trace not in logged
            for body in seen:
                assert trace not in body
    assert "webhook_secret" not in "".join(seen)


# ---------------------------------------------------------------------------------------- the KEK itself


def test_the_kek_file_is_made_0600_once_and_production_never_makes_one(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.kek"
    settings = Settings(environment="test", secrets_kek_file=str(path))
    first = keyring_from_settings(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyring_from_settings(settings).current.id == first.current.id
    assert str(first.current.key) not in repr(first)
    missing = tmp_path / "missing.kek"
    production = Settings.model_construct(
        environment="production", secrets_kek=None, secrets_kek_file=str(missing), secrets_kek_retired_files=[]
    )
    with pytest.raises(SecretsKeyError, match="production never makes one"):
        keyring_from_settings(production)
    assert not missing.exists()


def test_the_environment_value_wins_and_bad_keys_are_refused(tmp_path: Path) -> None:
    from pydantic import SecretStr

    ring = keyring_from_settings(
        Settings(environment="test", secrets_kek=SecretStr(TEST_KEK), secrets_kek_file=str(tmp_path / "x.kek"))
    )
    assert ring.current.id == TEST_KEK_ID and not (tmp_path / "x.kek").exists()
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(SecretsKeyError):
            keyring_from_settings(Settings(environment="test", secrets_kek=SecretStr(bad)))


def test_a_sealed_secret_opens_only_for_its_platform_and_unaltered() -> None:
    ring = Keyring(Kek(b"k" * 32))
    sealed = ring.seal("whsec_AAAA", "p1")
    assert ring.open(sealed, "p1") == "whsec_AAAA"
    assert sealed != ring.seal("whsec_AAAA", "p1")  # a fresh nonce each time
    with pytest.raises(SecretsKeyError, match="does not open"):
        ring.open(sealed, "p2")  # copied onto another platform's row
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretsKeyError, match="does not open"):
        ring.open(tampered, "p1")
    rotated = Keyring(Kek(b"n" * 32)).with_retired([ring.current])
    assert rotated.open(sealed, "p1") == "whsec_AAAA" and rotated.needs_sealing(sealed)
    assert not rotated.needs_sealing(rotated.seal("whsec_AAAA", "p1")) and rotated.needs_sealing("whsec_AAAA")
