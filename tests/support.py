"""An API under test with a frozen clock, two platforms and a key for every role (used by the `api` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.bootstrap import Container, bootstrap
from services.http.app import create_app
from shared.auth import create_key
from shared.clock import FrozenClock
from shared.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


if TYPE_CHECKING:  # the bench imports order_body from here without pulling in the test client
    from fastapi.testclient import TestClient


@dataclass
class Api:
    """A test client plus the keys of each role."""

    client: TestClient
    container: Container
    clock: FrozenClock
    keys: dict[str, str]
    platform_a: str
    platform_b: str

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def issue(self, who: str = "issuer", platform: str | None = None, **overrides: Any) -> Any:
        return self.call("POST", "/v1/orders", who, json=order_body(platform or self.platform_a, **overrides))

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))


def order_body(platform_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuer_reference": "MCI-2026-0001",
        "platform_id": platform_id,
        "signed_off_by": "A. Nurlanova, deputy head",
        "unit": "Department of Information Security",
        "legal_basis": {"act": "Law on Mass Media", "article": "Art. 18-1 p.3"},
        "category": "child_cyberbullying",
        "statement_of_reasons": "The posts target a named minor with insults and threats.",
        "items": [
            {"url": "https://social.example/p/1", "content_id": "p1", "content_type": "post"},
            {"url": "https://social.example/p/2"},
        ],
        "requested_action": "remove",
        "territorial_scope": ["KZ"],
        "language": "kk",
    }
    body.update(overrides)
    return body


@contextmanager
def make_api(db_url: str) -> Iterator[Api]:
    """Start the app on a migrated database with two platforms and one key per role."""
    settings = Settings(
        environment="test", database_url=db_url, embedded_workers=False, webhook_allow_list=["127.0.0.1"]
    )
    clock = FrozenClock(T0)
    container = bootstrap(settings, clock=clock)
    app = create_app(container, run_workers=False)
    with container.db.transaction() as conn:
        from services.registry import service as registry

        rep = {"name": "Rep", "citizenship": "KZ", "email": "rep@example.kz"}
        a, _ = registry.register(conn, {"name": "A", "monthly_users": 200_000, "representative": rep}, T0)
        b, _ = registry.register(conn, {"name": "B", "monthly_users": 300_000, "representative": rep}, T0)
        keys = {
            "admin": create_key(conn, "admin", T0)[0],
            "auditor": create_key(conn, "auditor", T0)[0],
            "issuer": create_key(conn, "issuer", T0, authority_id="mci", authority_name="Ministry")[0],
            "issuer2": create_key(conn, "issuer", T0, authority_id="other", authority_name="Other")[0],
            "platform_a": create_key(conn, "platform", T0, platform_id=a.id)[0],
            "platform_b": create_key(conn, "platform", T0, platform_id=b.id)[0],
        }
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield Api(client, container, clock, keys, a.id, b.id)
    container.close()
