"""The /metrics endpoint of a background process (its own port), and the one check of the metrics key every
process applies, the API's route included."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

log = logging.getLogger("takedown.metrics")

StartResponse = Callable[[str, list[tuple[str, str]]], object]


def refusal(key: SecretStr | None, production: bool, authorization: str | None) -> int | None:
    """Why a scrape is refused, as an HTTP status (404: metrics off in production without a key; 401: the key is
    needed and was not given), or None to answer it."""
    if key is None:
        return 404 if production else None
    scheme, _, given = (authorization or "").partition(" ")
    expected = key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return 401
    return None


REFUSALS = {
    404: ("http", "Not Found", "metrics are off: set TAKEDOWN_METRICS_KEY"),
    401: ("unauthorized", "Unauthorized", "metrics need the metrics key as a Bearer token"),
}


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, none left behind at exit."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    """No stderr line per scrape (the process's own logs stay JSON)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop wsgiref's access log line."""


class MetricsServer:
    """Serves `GET /metrics` (Prometheus text, behind the metrics key) on its own port, in a daemon thread; `read`
    sets this process's scrape-time gauges first."""

    def __init__(self, host: str, port: int, key: SecretStr | None, production: bool, read: Callable[[], None]) -> None:
        self.host, self.port, self.key, self.production, self.read = host, port, key, production, read
        self._server: WSGIServer | None = None

    def start(self) -> None:
        """Bind the port and serve until `stop` (a busy port fails the process at start-up, not at a scrape)."""
        self._server = make_server(self.host, self.port, self.app, server_class=_Server, handler_class=_Quiet)
        self.port = self._server.server_port
        # Polled every 0.1 s for `stop`: the default 0.5 s would add that much to every process's stop.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.1)
        threading.Thread(target=serve, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application: /metrics, or a problem document (RFC 9457) as the API would answer."""
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _problem(start_response, 404, "http", "Not Found", "only GET /metrics is served here")
        status = refusal(self.key, self.production, environ.get("HTTP_AUTHORIZATION"))
        if status is not None:
            return _problem(start_response, status, *REFUSALS[status])
        self.read()
        body = generate_latest()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]


def _problem(start_response: StartResponse, status: int, kind: str, title: str, detail: str) -> list[bytes]:
    # The same document the API's problem table makes for these two refusals (this thread has no FastAPI app).
    kind_uri = "about:blank" if kind == "http" else f"/problems/{kind}"
    body = json.dumps({"type": kind_uri, "title": title, "status": status, "detail": detail}).encode()
    reason = {401: "Unauthorized", 404: "Not Found"}[status]
    headers = [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))]
    if status == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    start_response(f"{status} {reason}", headers)
    return [body]
