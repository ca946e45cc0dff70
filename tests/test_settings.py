"""Settings refuse unsafe production configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

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


def test_database_passwords_and_the_metrics_key_come_from_files(tmp_path: Path) -> None:
    app, owner, metrics = tmp_path / "app", tmp_path / "owner", tmp_path / "metrics"
    app.write_text("s3cret/@:x\n")  # characters a URL must quote
    owner.write_text("owner-pw\n")
    metrics.write_text("scrape-token\n")
    settings = Settings(
        database_url="postgresql+psycopg://takedown_app@db:5432/takedown",
        migrate_database_url="postgresql+psycopg://takedown@db:5432/takedown",
        read_database_url="postgresql+psycopg://takedown_app:given@replica:5432/takedown",
        db_password_files={"takedown_app": str(app), "takedown": str(owner)},
        metrics_key_file=str(metrics),
    )
    assert make_url(settings.database_url).password == "s3cret/@:x"
    assert make_url(settings.migrate_database_url or "").password == "owner-pw"
    assert make_url(settings.read_database_url or "").password == "given"  # a password in the URL wins
    assert settings.app_role_password is not None and settings.app_role_password.get_secret_value() == "s3cret/@:x"
    assert settings.read_role_password is None
    assert settings.metrics_key is not None and settings.metrics_key.get_secret_value() == "scrape-token"
    assert "s3cret" not in str(settings.redacted())


def test_a_missing_or_empty_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read the secret file"):
        Settings(metrics_key_file=str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError, match="is empty"):
        Settings(database_url=PG, db_password_files={"u": str(tmp_path / "empty")})
