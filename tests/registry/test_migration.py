"""Migration 0006 moves the signing secrets out of `platforms` (each backend): none is lost, delivery still signs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, inspect, text

from services.registry.kek import Kek, Keyring
from services.registry.service import endpoints
from shared.db import UtcDateTime, make_engine
from shared.migrate import upgrade
from tests.builders import T0
from tests.conftest import _admin, _pg_url, drop_pg


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty, unmigrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        request.getfixturevalue("pg_template")  # PostgreSQL reachable (or explicitly switched off)
        url = _pg_url(f"takedown_m_{uuid.uuid4().hex[:12]}")
        _admin(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    engine = make_engine(url)
    yield engine
    engine.dispose()
    if request.param == "postgresql":
        drop_pg(url)


def test_the_secrets_move_to_platform_secrets_with_nothing_lost(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO platforms (id, name, monthly_users, representative, webhook_url, webhook_enabled,"
                " secret, previous_secret, previous_secret_expires_at, created_at, updated_at) VALUES"
                " ('p1', 'P', 1, '{}', 'https://p.example/h', true, 'whsec_new', 'whsec_old', :t, :t, :t)"
            ).bindparams(bindparam("t", type_=UtcDateTime())),
            {"t": T0},
        )

    upgrade(empty_engine)

    assert {c["name"] for c in inspect(empty_engine).get_columns("platforms")}.isdisjoint({"secret", "previous_secret"})
    with empty_engine.connect() as conn:
        # Not sealed by the migration (it holds no KEK): read as plaintext until a process seals it.
        [endpoint] = endpoints(conn, ["p1"], Keyring(Kek(bytes(32)))).values()
    assert (endpoint.secret, endpoint.previous_secret, endpoint.url) == (
        "whsec_new",
        "whsec_old",
        "https://p.example/h",
    )
    assert endpoint.signing_secrets(T0.replace(year=2025)) == ["whsec_new", "whsec_old"]
