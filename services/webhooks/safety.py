"""Which webhook destinations may be called: no internal addresses unless an operator allow-lists them."""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}


def resolve_host(host: str, port: int) -> list[str]:
    """Return every address `host` resolves to for a TCP connection to `port`."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@functools.lru_cache(maxsize=4096)
def vetted_literal(url: str, allow_list: tuple[str, ...]) -> tuple[str | None, str] | None:
    """`vetted_address` for a URL whose host is an IP address (no lookup, so the answer is cached); None for a name."""
    try:
        ipaddress.ip_address(httpx.URL(url).host)
    except (httpx.InvalidURL, ValueError):
        return None
    return vetted_address(url, allow_list, resolver=lambda host, port: [host])


def parse_allow_list(allow_list: Sequence[str]) -> list[IPNetwork]:
    """Parse allow-list entries (IPs or CIDRs); a malformed entry is a configuration error (ValueError)."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in allow_list]


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1, but Python before 3.13 does not call it loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal_reason(address: IPAddress) -> str | None:
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        # Catches the rest of the special-purpose ranges, e.g. 100.64.0.0/10 (carrier-grade NAT).
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _covered(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def is_allowed_destination(
    url: str,
    allow_list: Sequence[str],
    *,
    resolver: Resolver = resolve_host,
) -> tuple[bool, str]:
    """Return (ok, reason): may the notifier POST to `url`, given the operator's allow-list of IPs/CIDRs?"""
    address, reason = vetted_address(url, allow_list, resolver=resolver)
    return address is not None, reason


def vetted_address(
    url: str,
    allow_list: Sequence[str],
    *,
    resolver: Resolver = resolve_host,
) -> tuple[str | None, str]:
    """Return (address, reason): an address of the URL's host that passed the checks, to connect to, or None."""
    try:
        # Parse as httpx will when it sends, so the host checked here is the host it connects to.
        target = httpx.URL(url)
        authority = urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError) as exc:
        return None, f"malformed URL: {exc}"
    scheme = target.scheme
    if scheme not in DEFAULT_PORTS:
        return None, f"scheme {scheme or '(none)'!r} is not http or https"
    if target.userinfo or "@" in authority:
        return None, "URL carries userinfo (credentials)"
    host = target.raw_host.decode("ascii")
    if not host:
        return None, "URL has no host"
    port = target.port if target.port is not None else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        return None, f"port {port} is out of range"
    networks = parse_allow_list(allow_list)
    try:
        resolved = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        return None, f"cannot resolve {host!r}: {exc}"
    if not resolved:
        return None, f"{host!r} resolves to no address"
    for raw in resolved:
        try:
            original = ipaddress.ip_address(raw)
        except ValueError:
            return None, f"{host!r} resolves to unparseable address {raw!r}"
        address = _unmapped(original)
        reason = _internal_reason(address)
        if reason is not None and not (_covered(address, networks) or _covered(original, networks)):
            return None, f"{host!r} resolves to {reason} address {address} not in the allow-list"
    return resolved[0], "ok"
