"""An API under test with a frozen clock, two platforms and a key for every role (the `api` fixture); any app served
by a real uvicorn on 127.0.0.1 (`serve`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from services.bootstrap import Container, bootstrap
from services.http.app import create_app
from shared.auth import create_key
from shared.clock import FrozenClock
from tests.builders import T0, order_body, platform_fields, service_settings


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


@contextmanager
def make_api(db_url: str, **settings: Any) -> Iterator[Api]:
    """Start the app on a migrated database with two platforms and one key per role (`settings`: overrides)."""
    clock = FrozenClock(T0)
    container = bootstrap(service_settings(db_url).model_copy(update=settings), clock=clock)
    app = create_app(container, run_workers=False)
    with container.db.transaction() as conn:
        a, _ = container.registry.register_in(conn, platform_fields("A"), T0)
        b, _ = container.registry.register_in(conn, platform_fields("B", monthly_users=300_000), T0)
        keys = {
            "admin": create_key(conn, "admin", T0)[0],
            "auditor": create_key(conn, "auditor", T0)[0],
            "issuer": create_key(conn, "issuer", T0, authority_id="mci", authority_name="Ministry")[0],
            "issuer2": create_key(conn, "issuer", T0, authority_id="other", authority_name="Other")[0],
            "platform_a": create_key(conn, "platform", T0, platform_id=a.id)[0],
            "platform_b": create_key(conn, "platform", T0, platform_id=b.id)[0],
        }
    with TestClient(app) as client:
        yield Api(client, container, clock, keys, a.id, b.id)
    container.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app behind a real uvicorn server on 127.0.0.1 (a free port), in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
