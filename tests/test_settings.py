"""Settings refuse unsafe production configurations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings

PG = "postgresql+psycopg://u@db/takedown"
HTTPS = "https://takedown.example.kz"


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "127.0.0.0/8", "::1", "::1/128", "::/0", "0.0.0.0/1", "::ffff:127.0.0.1"]
)
def test_production_refuses_loopback_in_the_allow_list(entry: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Settings(environment="production", database_url=PG, public_base_url=HTTPS, webhook_allow_list=[entry])


def test_production_refuses_sqlite_and_accepts_a_private_range() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(environment="production", database_url="sqlite:///x.db", public_base_url=HTTPS)
    settings = Settings(
        environment="production", database_url=PG, public_base_url=HTTPS, webhook_allow_list=["10.1.0.0/16"]
    )
    assert settings.webhook_allow_list


def test_production_refuses_plain_http_for_the_public_base_url_and_the_supervisor() -> None:
    with pytest.raises(ValidationError, match="https public base URL"):
        Settings(environment="production", database_url=PG, public_base_url="http://takedown.example.kz")
    with pytest.raises(ValidationError, match="https supervisor"):
        Settings(
            environment="production",
            database_url=PG,
            public_base_url=HTTPS,
            supervisor_webhook_url="http://supervisor.example.kz/hook",
        )
    assert Settings(environment="development", public_base_url="http://127.0.0.1:8000").public_base_url


def test_takedown_env_selects_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEDOWN_ENV", "production")
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", PG)
    with pytest.raises(ValidationError, match="https public base URL"):
        Settings()
    monkeypatch.setenv("TAKEDOWN_PUBLIC_BASE_URL", HTTPS)
    assert Settings().production
