"""Settings refuse unsafe production configurations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings

PG = "postgresql+psycopg://u@db/takedown"


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "127.0.0.0/8", "::1", "::1/128", "::/0", "0.0.0.0/1", "::ffff:127.0.0.1"]
)
def test_production_refuses_loopback_in_the_allow_list(entry: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Settings(environment="production", database_url=PG, webhook_allow_list=[entry])


def test_production_refuses_sqlite_and_accepts_a_private_range() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(environment="production", database_url="sqlite:///x.db")
    assert Settings(environment="production", database_url=PG, webhook_allow_list=["10.1.0.0/16"]).webhook_allow_list
