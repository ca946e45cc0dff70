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
def vetted_literal(url: str, allow_list: tuple[str, ...], https_only: bool = False) -> tuple[str | None, str] | None:
    """`vetted_address` for a URL whose host is an IP address (no lookup, so the answer is cached); None for a name."""
    try:
        ipaddress.ip_address(httpx.URL(url).host)
    except (httpx.InvalidURL, ValueError):
        return None
    return vetted_address(url, allow_list, resolver=lambda host, port: [host], https_only=https_only)


def parse_allow_list(allow_list: Sequence[str]) -> list[IPNetwork]:
    """Parse allow-list entries (IPs or CIDRs); a malformed entry is a configuration error (ValueError)."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in allow_list]


# IPv6 forms that carry an IPv4 address, and so reach an IPv4 host: IPv4-mapped (::ffff:a.b.c.d) and the
# deprecated IPv4-compatible (::a.b.c.d) name the host itself; 6to4 (2002::/16), Teredo (2001::/32) and NAT64
# (64:ff9b::/96, RFC 6052) are relayed to it by a gateway. Python's `is_private` sees none of the embedded address.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215's local-use NAT64 prefix: its gateways are the operator's own, so it is internal whatever it embeds.
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, with the name of the form that carries it (None: it carries none)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]  # the client, the host the relay delivers to (its server is public)
    if address in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1, which are themselves
        return "IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def same_host_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address is another spelling of (mapped or compatible; not a relayed form)."""
    carried = embedded_ipv4(address)
    return carried[1] if carried is not None and carried[0] in ("IPv4-mapped", "IPv4-compatible") else None


def _plain_reason(address: IPAddress) -> str | None:
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


def internal_reason(address: IPAddress) -> str | None:
    """Why connecting to `address` may reach an internal host, e.g. "loopback address 127.0.0.1" (None: it cannot).

    Pure: the classifier behind every destination check, at registration and again before each attempt.
    """
    carried = embedded_ipv4(address)
    if carried is not None:
        form, inner = carried
        why = _plain_reason(inner)
        if why is not None:
            return f"{form} address {address} embedding {why} address {inner}"
    if isinstance(address, ipaddress.IPv6Address) and address in LOCAL_NAT64:
        return f"local-use NAT64 address {address}"
    why = _plain_reason(address)
    return None if why is None else f"{why} address {address}"


def _covered(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def is_allowed_destination(
    url: str,
    allow_list: Sequence[str],
    *,
    resolver: Resolver = resolve_host,
    https_only: bool = False,
) -> tuple[bool, str]:
    """Return (ok, reason): may the notifier POST to `url`, given the operator's allow-list of IPs/CIDRs?"""
    address, reason = vetted_address(url, allow_list, resolver=resolver, https_only=https_only)
    return address is not None, reason


def vetted_address(
    url: str,
    allow_list: Sequence[str],
    *,
    resolver: Resolver = resolve_host,
    https_only: bool = False,
) -> tuple[str | None, str]:
    """Return (address, reason): an address of the URL's host that passed the checks, to connect to, or None.

    `https_only` (production): plain http is refused, as a signed push over it can be read and replayed on the way.
    """
    try:
        # Parse as httpx will when it sends, so the host checked here is the host it connects to.
        target = httpx.URL(url)
        authority = urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError) as exc:
        return None, f"malformed URL: {exc}"
    scheme = target.scheme
    if scheme not in DEFAULT_PORTS:
        return None, f"scheme {scheme or '(none)'!r} is not http or https"
    if https_only and scheme != "https":
        return None, "plain http is refused in production: the webhook URL must be https"
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
        reason = internal_reason(original)
        if reason is None or _covered(original, networks):
            continue
        # An allow-listed IPv4 host may be reached by its IPv4-mapped spelling, never through a relay's prefix.
        same_host = same_host_ipv4(original)
        if same_host is not None and _covered(same_host, networks):
            continue
        return None, f"{host!r} resolves to {reason} not in the allow-list"
    return resolved[0], "ok"
