"""The shipped nginx configuration, run by real nginx (Debian's package) in front of two real uvicorn servers.

nginx runs unprivileged (as `nobody` when the tests run as root), with its prefix, pid, logs and temp paths in a
temporary directory and free 127.0.0.1 ports. Fails, never skips, when nginx is missing (`make install` brings it).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.proxy import CONF, Proxy, start_nginx, stop_nginx
from services.http.app import create_app
from shared.settings import Settings
from tests.conftest import fresh_sqlite_url
from tests.notifier.receiver import unused_port
from tests.support import Api, make_api

PROBLEM = "application/problem+json"


@dataclass
class Recorder:
    """An ASGI wrapper that records the headers of every HTTP request it passes on (to tell the upstreams apart)."""

    app: ASGIApp
    seen: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append({**headers, ":path": scope["path"]})
        await self.app(scope, receive, send)


@dataclass
class Upstream:
    """One API process: a uvicorn server on a free 127.0.0.1 port, in a thread."""

    recorder: Recorder
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def start_upstream(api: Api) -> Upstream:
    """A second app on the same container (as a second process on the same database would be), served for real."""
    recorder = Recorder(create_app(api.container, run_workers=False))
    port = unused_port()
    config = uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return Upstream(recorder, port, server, thread)


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[Api]:
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    with make_api(fresh_sqlite_url(sqlite_template, tmp_path)) as made:
        yield made


@pytest.fixture
def upstreams(api: Api) -> Iterator[list[Upstream]]:
    started = [start_upstream(api), start_upstream(api)]
    yield started
    for upstream in started:
        if upstream.thread.is_alive():
            upstream.stop()


@pytest.fixture
def proxy(upstreams: list[Upstream]) -> Iterator[Proxy]:
    started = start_nginx([u.port for u in upstreams])
    yield started
    stop_nginx(started)


def auth(api: Api, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[who]}"}


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == type_ and body["title"] and body["detail"]
    return body


def test_requests_reach_both_api_processes(proxy: Proxy, upstreams: list[Upstream]) -> None:
    with httpx.Client(base_url=proxy.base) as client:
        for _ in range(10):
            assert client.get("/healthz").status_code == 200
    counts = [sum(1 for r in u.recorder.seen if r[":path"] == "/healthz") for u in upstreams]
    assert sum(counts) == 10 and min(counts) >= 3, counts  # round robin: about half each


def test_a_clients_request_id_reaches_the_api_and_comes_back(proxy: Proxy, upstreams: list[Upstream], api: Api) -> None:
    with httpx.Client(base_url=proxy.base) as client:
        given = client.get("/v1/orders", headers={**auth(api, "admin"), "X-Request-Id": "client-req-42"})
        made = client.get("/v1/orders", headers=auth(api, "admin"))
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-req-42"
    seen = [r.get("x-request-id") for u in upstreams for r in u.recorder.seen]
    assert "client-req-42" in seen
    # Without one, the proxy makes one (nginx's $request_id: 32 hex digits), which the API uses and returns.
    assert made.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.headers["x-request-id"] in seen
    # The proxy's line carries the same id as the API's; nginx writes it after the response has gone out.
    wanted = ["request_id=client-req-42", f"request_id={made.headers['x-request-id']}"]
    deadline = time.monotonic() + 5
    while not all(w in (log := (proxy.prefix / "access.log").read_text()) for w in wanted):
        assert time.monotonic() < deadline, (wanted, log)
        time.sleep(0.05)


def test_a_body_over_max_body_bytes_is_refused_by_the_proxy_as_a_problem(
    proxy: Proxy, upstreams: list[Upstream], api: Api
) -> None:
    limit = Settings.model_fields["max_body_bytes"].default
    headers = {**auth(api, "issuer"), "content-type": "application/json", "X-Request-Id": "big-1"}
    with httpx.Client(base_url=proxy.base) as client:
        declared = client.post("/v1/orders", headers=headers, content=b" " * (limit + 1))
        chunks = (b" " * 65_536 for _ in range(limit // 65_536 + 1))  # no Content-Length: chunked, counted as read
        streamed = client.post("/v1/orders", headers=headers, content=chunks)
        reached = sum(r[":path"] == "/v1/orders" for u in upstreams for r in u.recorder.seen)
        at_limit = client.post("/v1/orders", headers=headers, content=b" " * limit)
    body = assert_problem(declared, 413, "/problems/body-too-large")
    assert str(limit) in body["detail"] and declared.headers["x-request-id"] == "big-1"
    assert_problem(streamed, 413, "/problems/body-too-large")
    assert reached == 0  # refused at the proxy: no API thread held by a body it would refuse anyway
    # Exactly the limit passes the proxy: the API itself answers (400: blank is not JSON).
    assert at_limit.status_code == 400 and at_limit.headers["content-type"].startswith(PROBLEM)
    assert sum(r[":path"] == "/v1/orders" for u in upstreams for r in u.recorder.seen) == 1


def _burst(base: str, path: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    """`count` requests at once from eight threads (faster than the limit on any machine: refusals cost nothing)."""
    with httpx.Client(base_url=base, headers=headers) as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: client.get(path), range(count)))


def test_public_routes_are_rate_limited_and_authenticated_routes_are_not(proxy: Proxy, api: Api) -> None:
    public = _burst(proxy.base, "/v1/ledger/public-key", {}, 80)
    statuses = [r.status_code for r in public]
    assert statuses.count(200) >= 20 and statuses.count(429) >= 1, statuses  # the burst of 20, then refusals
    assert set(statuses) == {200, 429}, statuses
    refused = next(r for r in public if r.status_code == 429)
    assert_problem(refused, 429, "/problems/rate-limited")
    assert refused.headers["retry-after"] == "1"
    # Every public route is limited (one zone per address): each burst meets refusals.
    report = "/v1/transparency/report?from=2025-01-01&to=2025-01-31"
    for path in ("/v1/ledger/checkpoint", "/v1/ledger/proofs/consistency?first=1&second=2", report):
        statuses = [r.status_code for r in _burst(proxy.base, path, {}, 40)]
        assert 429 in statuses, (path, statuses)
    # An authenticated route is not limited by the proxy, even now: every request reaches the API.
    private = _burst(proxy.base, "/v1/orders", auth(api, "admin"), 80)
    assert [r.status_code for r in private] == [200] * 80


def test_with_one_api_process_down_requests_still_succeed(proxy: Proxy, upstreams: list[Upstream]) -> None:
    upstreams[1].stop()
    with httpx.Client(base_url=proxy.base) as client:
        answers = [client.get("/healthz") for _ in range(10)]
    assert [r.status_code for r in answers] == [200] * 10
    assert sum(r[":path"] == "/healthz" for r in upstreams[0].recorder.seen) == 10
    upstreams[0].stop()  # none left: the proxy's own problem document, not nginx's HTML page
    gone = httpx.get(f"{proxy.base}/healthz", headers={"X-Request-Id": "down-1"})
    assert_problem(gone, 503, "/problems/unavailable")
    assert gone.headers["x-request-id"] == "down-1"


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].strip().rstrip(";").split()
        if words:
            found.setdefault(words[0], []).append(" ".join(words[1:]))
    return found


def test_the_config_sets_header_and_body_timeouts_and_the_apis_body_limit() -> None:
    conf = _directives(CONF.read_text())
    for directive in ("client_header_timeout", "client_body_timeout", "proxy_connect_timeout", "proxy_read_timeout"):
        assert len(conf.get(directive, [])) == 1, directive
        assert re.fullmatch(r"[0-9]+s", conf[directive][0]), conf[directive]
    assert conf["client_max_body_size"] == [str(Settings.model_fields["max_body_bytes"].default)]
    assert conf["include"] == ["upstreams.conf", "listen.conf"]
