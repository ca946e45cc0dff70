"""One webhook delivery attempt over HTTP: POST, bounded by a total deadline, never raising on network errors."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Literal

import httpx

# What went wrong in an attempt without an HTTP status; "refused_destination" is the worker's: the destination
# check refused the webhook host's address, so nothing was sent.
ErrorKind = Literal["timeout", "connect", "read", "write", "protocol", "transport", "refused_destination"]
EXCERPT_BYTES = 2048
USER_AGENT = f"takedown-notifier/{version('takedown')}"


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt produced: a status and/or a transport error, its duration and a response excerpt."""

    status_code: int | None
    error_kind: ErrorKind | None
    duration_ms: int
    response_excerpt: str
    retry_after: str | None


def _error_kind(exc: httpx.RequestError) -> ErrorKind:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.ReadError):
        return "read"
    if isinstance(exc, httpx.WriteError):
        return "write"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return "protocol"
    return "transport"


@functools.lru_cache(maxsize=4096)
def _target(url: str, connect_to: str | None) -> tuple[httpx.URL, str | None, tuple[tuple[str, str], ...]]:
    """The URL to request, the Host header to send and the TLS extensions, parsed once per (URL, address)."""
    target = httpx.URL(url)
    if connect_to is None:
        return target, None, ()
    sni = (("sni_hostname", target.host),) if target.scheme == "https" else ()
    return target.copy_with(host=connect_to), target.netloc.decode("ascii"), sni


@functools.cache
def _tls() -> ssl.SSLContext:
    # One context for every pool: loading the CA bundle costs 35-50 ms of CPU, and a pool made its own, so a
    # worker paid it once per platform (20 platforms: about a second of CPU while the first deliveries went out).
    # certifi's bundle, whatever SSL_CERT_FILE or SSL_CERT_DIR say: a sender takes nothing from its environment.
    return httpx.create_ssl_context(trust_env=False)


def transport(connections: int, verify: ssl.SSLContext | None = None) -> httpx.AsyncHTTPTransport:
    """A connection pool for one destination, `connections` wide (the worker keeps one per platform)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncHTTPTransport(verify=verify or _tls(), limits=limits)


async def send(
    pool: httpx.AsyncBaseTransport,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    timeout: float,
    connect_to: str | None = None,
) -> AttemptResult:
    """POST `body` to `url` once, within `timeout` seconds in total, and report what happened.

    With `connect_to` (an IP address that was checked), the connection goes to that address while the Host
    header and TLS server name stay the URL's: a DNS answer that changes after the check cannot redirect it.

    The request goes straight to httpx's transport, not through an `AsyncClient`: a webhook is one stateless
    POST, and the client's layers are what a sender must not have (a cookie jar that would hand one delivery's
    Set-Cookie back to the platform with the next; redirects, auth and proxies from the environment). Skipping
    them cuts a bare loop's CPU per request by 21-34% (bench/notifier.py runs both arrangements in the same run).
    """
    target, host_header, extensions = _target(url, connect_to)
    request_headers = {**headers, "user-agent": USER_AGENT, "accept": "*/*"}
    if host_header is not None:
        request_headers.setdefault("host", host_header)
    request = httpx.Request(
        "POST",
        target,
        headers=request_headers,
        content=body,
        extensions={"timeout": httpx.Timeout(timeout).as_dict(), **dict(extensions)},
    )
    status_code: int | None = None
    retry_after: str | None = None
    error_kind: ErrorKind | None = None
    excerpt = bytearray()
    started = time.monotonic()
    try:
        # httpx's own timeouts bound each read, not the whole exchange: a body dribbling one byte at a time
        # would never trip them, so the deadline wraps everything up to the last byte we read.
        async with asyncio.timeout(timeout):
            response = await pool.handle_async_request(request)
            try:
                status_code = response.status_code
                retry_after = response.headers.get("retry-after")
                # Raw bytes: no Accept-Encoding is sent, so there is nothing to decode, and a body that is
                # compressed anyway stays cut at EXCERPT_BYTES instead of being inflated first.
                async for chunk in response.aiter_raw():
                    excerpt += chunk[: EXCERPT_BYTES - len(excerpt)]
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        error_kind = "timeout"
    except httpx.RequestError as exc:
        error_kind = _error_kind(exc)
    duration_ms = round((time.monotonic() - started) * 1000)
    return AttemptResult(
        status_code=status_code,
        error_kind=error_kind,
        duration_ms=duration_ms,
        # NUL cannot be stored in a PostgreSQL text column: keep the excerpt storable whatever the peer sent.
        response_excerpt=excerpt.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        retry_after=retry_after,
    )
