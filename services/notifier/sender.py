"""One webhook delivery attempt over HTTP: POST, bounded by a total deadline, never raising on network errors."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import httpx

# What went wrong in an attempt without an HTTP status; "refused_destination" is the worker's: the destination
# check refused the webhook host's address, so nothing was sent.
ErrorKind = Literal["timeout", "connect", "read", "write", "protocol", "transport", "refused_destination"]
EXCERPT_BYTES = 2048


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


async def send(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    timeout: float,
    connect_to: str | None = None,
) -> AttemptResult:
    """POST `body` to `url` once, within `timeout` seconds in total, and report what happened.

    With `connect_to` (an IP address that was checked), the connection goes to that address while the Host
    header and TLS server name stay the URL's: a DNS answer that changes after the check cannot redirect it.
    """
    target, host_header, extensions = _target(url, connect_to)
    headers = dict(headers)
    if host_header is not None:
        headers.setdefault("host", host_header)
    status_code: int | None = None
    retry_after: str | None = None
    error_kind: ErrorKind | None = None
    excerpt = bytearray()
    started = time.monotonic()
    try:
        # httpx's own timeouts bound each read, not the whole exchange: a body dribbling one byte at a time
        # would never trip them, so the deadline wraps everything up to the last byte we read.
        async with (
            asyncio.timeout(timeout),
            client.stream(
                "POST",
                target,
                headers=headers,
                content=body,
                extensions=dict(extensions),
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
            ) as response,
        ):
            status_code = response.status_code
            retry_after = response.headers.get("retry-after")
            async for chunk in response.aiter_bytes():
                excerpt += chunk[: EXCERPT_BYTES - len(excerpt)]
                if len(excerpt) >= EXCERPT_BYTES:
                    break
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
