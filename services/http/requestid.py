"""The request id: taken from `X-Request-Id` (or made), bound to the request's log lines, returned in the response;
the headers every response carries (HSTS, nosniff), on every status, problems and refusals by middleware too; and
each request counted and timed by route template (one pure-ASGI middleware: no task per request)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import bind_request_id, unbind_request_id

HEADER = b"x-request-id"
MAX_LENGTH = 128
# Browsers only ever reach the API over https once they have seen it (RFC 6797; ignored on plain http, as it must
# be), and never guess a content type other than the one sent (a JSON body is never run as a script). A response
# that sets one of these itself (the dashboard's page) keeps its own.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
)

log = logging.getLogger("takedown.http")

REQUESTS = Counter(
    "takedown_http_requests_total", "HTTP requests by route template, method and status", ["route", "method", "status"]
)
DURATION = Histogram(
    "takedown_http_request_seconds",
    "HTTP request duration by route template",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# A request that matched no route (a 404, a scan) counts under one label, and a method no route answers under
# another: the label sets stay as few as the routes, whatever clients send.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The label children, looked up once per (route, method, status): a request costs two dict lookups, not
# prometheus_client's label validation and lock.
_counted: dict[tuple[str, str, int], Any] = {}
_timed: dict[str, Any] = {}


def observe(route: str, method: str, status: int, seconds: float) -> None:
    """Count one finished request and time it under its route template."""
    counter = _counted.get((route, method, status))
    if counter is None:
        counter = _counted[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    timer = _timed.get(route)
    if timer is None:
        timer = _timed[route] = DURATION.labels(route)
    counter.inc()
    timer.observe(seconds)


def route_of(scope: Scope) -> str:
    """The template of the route that answered (`/v1/orders/{order_id}`), set in the scope by the router."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def usable(value: bytes | None) -> str | None:
    """A client's request id if it is safe to log and echo: printable ASCII, 1 to 128 characters (None: not)."""
    if value is None or not 0 < len(value) <= MAX_LENGTH:
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() and text.strip() == text else None


def _method(scope: Scope) -> str:
    method: str = scope["method"]
    return method if method in METHODS else "other"


class RequestIdMiddleware:
    """Binds each HTTP request's id for its duration and logs one line per request (method, path, status, time);
    counts and times it (`observe`); adds `SECURITY_HEADERS` to every response. Outermost, so that no response leaves without them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), None)
        request_id = usable(given) or uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                present = {k.lower() for k, _ in headers}
                added = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*headers, *added, (HEADER, request_id.encode("ascii"))]}
            await send(message)

        started = time.perf_counter()
        bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # Left bound: Starlette's outermost error middleware logs the error after this frame is gone, and its
            # line should carry the id too. The binding ends with the request's task (each request has its own).
            log.error("request failed", extra={"method": scope["method"], "path": scope["path"]})
            observe(route_of(scope), _method(scope), status, time.perf_counter() - started)
            raise
        elapsed = time.perf_counter() - started
        observe(route_of(scope), _method(scope), status, elapsed)
        duration_ms = round(elapsed * 1000, 1)
        log.info(
            "request finished",
            extra={"method": scope["method"], "path": scope["path"], "status": status, "duration_ms": duration_ms},
        )
        unbind_request_id()
