"""Destination checks: no internal addresses unless allow-listed, only http(s), no credentials in URLs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from services.webhooks.safety import (
    Resolver,
    embedded_ipv4,
    internal_reason,
    is_allowed_destination,
    resolve_host,
    same_host_ipv4,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def resolves_to(*addresses: str) -> Resolver:
    def resolver(host: str, port: int) -> Sequence[str]:
        return addresses

    return resolver


def check(url: str, *addresses: str, allow: Sequence[str] = ()) -> tuple[bool, str]:
    return is_allowed_destination(url, allow, resolver=resolves_to(*addresses))


@pytest.mark.parametrize("address", [PUBLIC_V4, PUBLIC_V6])
def test_public_address_is_allowed(address: str) -> None:
    assert check("https://hooks.platform.example/takedown", address) == (True, "ok")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    ok, why = check("https://hooks.platform.example/", address)
    assert not ok
    assert reason in why


def test_one_internal_address_among_public_ones_is_refused() -> None:
    ok, why = check("https://hooks.platform.example/", PUBLIC_V4, "10.0.0.5")
    assert not ok
    assert "10.0.0.5" in why


@pytest.mark.parametrize(
    ("addresses", "allow"),
    [
        (("127.0.0.1",), ["127.0.0.1"]),
        (("127.0.0.1", "127.0.0.2"), ["127.0.0.0/8"]),
        (("::1",), ["::1/128"]),
        (("::ffff:127.0.0.1",), ["127.0.0.0/8"]),
        (("10.0.0.5", PUBLIC_V4), ["10.0.0.0/24"]),
    ],
)
def test_allow_list_admits_internal_addresses_it_covers(addresses: tuple[str, ...], allow: list[str]) -> None:
    assert check("http://receiver.test:8080/hook", *addresses, allow=allow) == (True, "ok")


def test_allow_list_must_cover_every_internal_address() -> None:
    ok, why = check("http://receiver.test/", "127.0.0.1", "10.0.0.1", allow=["127.0.0.0/8"])
    assert not ok
    assert "10.0.0.1" in why


def test_ipv4_allow_entry_does_not_cover_ipv6_loopback() -> None:
    assert not check("http://localhost/", "::1", allow=["127.0.0.0/8"])[0]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.platform.example/",
        "file:///etc/passwd",
        "gopher://hooks.platform.example/",
        "javascript:alert(1)",
        "hooks.platform.example/path",
    ],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    ok, why = check(url, PUBLIC_V4)
    assert not ok
    assert "scheme" in why


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.platform.example/",
        "https://user@hooks.platform.example/",
        "https://@hooks.platform.example/",
        "http://hooks.platform.example@127.0.0.1/",
        "http://evil.example\\@127.0.0.1/",
    ],
)
def test_userinfo_is_refused(url: str) -> None:
    ok, why = check(url, PUBLIC_V4)
    assert not ok
    assert "userinfo" in why


@pytest.mark.parametrize(
    "url", ["http://[::1/", "http://host:99999/", "http://host:port/", "https:///path", "http://h\t.example/"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    assert not check(url, PUBLIC_V4)[0]


def test_resolver_gets_the_default_or_explicit_port() -> None:
    seen: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> Sequence[str]:
        seen.append((host, port))
        return [PUBLIC_V4]

    for url in ["https://a.example/", "http://b.example/", "HTTPS://C.example:8443/"]:
        assert is_allowed_destination(url, [], resolver=resolver)[0]
    assert seen == [("a.example", 443), ("b.example", 80), ("c.example", 8443)]


def test_unresolvable_host_is_refused() -> None:
    def failing(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    ok, why = is_allowed_destination("https://nowhere.invalid/", [], resolver=failing)
    assert not ok
    assert "cannot resolve" in why


def test_host_with_no_addresses_is_refused() -> None:
    assert not check("https://empty.example/")[0]


def test_malformed_allow_list_entry_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        check("https://hooks.platform.example/", PUBLIC_V4, allow=["not-an-ip"])


def test_real_resolution_of_loopback_literals() -> None:
    # Literal addresses go through the real getaddrinfo without touching DNS.
    assert resolve_host("127.0.0.1", 80) == ["127.0.0.1"]
    assert is_allowed_destination("http://127.0.0.1:9/hook", []) == (
        False,
        "'127.0.0.1' resolves to loopback address 127.0.0.1 not in the allow-list",
    )
    assert is_allowed_destination("http://127.0.0.1:9/hook", ["127.0.0.0/8"]) == (True, "ok")
    assert not is_allowed_destination("http://[::ffff:7f00:1]:9/hook", [])[0]


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "localhost"])
def test_obfuscated_loopback_spellings_are_refused(host: str) -> None:
    # getaddrinfo normalises these exactly as the connecting client will; httpx rejects the octal one outright.
    ok, why = is_allowed_destination(f"http://{host}:9/hook", [])
    assert not ok
    assert "loopback" in why or "malformed" in why


def test_idna_host_is_resolved_in_its_ascii_form() -> None:
    seen: list[str] = []

    def resolver(host: str, port: int) -> Sequence[str]:
        seen.append(host)
        return [PUBLIC_V4]

    assert is_allowed_destination("https://bücher.example/", [], resolver=resolver)[0]
    assert seen == ["xn--bcher-kva.example"]


# ------------------------------------------------------------------ IPv6 forms that carry an IPv4 address (pure)


@pytest.mark.parametrize(
    ("address", "form", "inner"),
    [
        ("2002:7f00:1::1", "6to4", "loopback address 127.0.0.1"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "6to4", "private address 10.0.0.1"),
        ("2002:a9fe:a9fe::1", "6to4", "link-local address 169.254.169.254"),
        # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted: 0x80ff_fffe).
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "loopback address 127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo", "private address 10.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64", "loopback address 127.0.0.1"),
        ("64:ff9b::c0a8:101", "NAT64", "private address 192.168.1.1"),
        ("::ffff:127.0.0.1", "IPv4-mapped", "loopback address 127.0.0.1"),
        ("::ffff:a9fe:a9fe", "IPv4-mapped", "link-local address 169.254.169.254"),
        ("::127.0.0.1", "IPv4-compatible", "loopback address 127.0.0.1"),
    ],
)
def test_embedded_internal_ipv4_is_named_by_the_classifier(address: str, form: str, inner: str) -> None:
    reason = internal_reason(ipaddress.ip_address(address))
    assert reason == f"{form} address {ipaddress.ip_address(address)} embedding {inner}"


# NAT64 of a public address stays refused: Python counts 64:ff9b::/96 within ::/8, reserved (no allow-list, no call).
@pytest.mark.parametrize("address", ["2002:5db8:d70e::1", PUBLIC_V4, PUBLIC_V6])
def test_forms_embedding_a_public_ipv4_and_public_addresses_are_not_internal(address: str) -> None:
    assert internal_reason(ipaddress.ip_address(address)) is None


def test_local_use_nat64_is_internal_whatever_it_embeds() -> None:
    assert (
        internal_reason(ipaddress.ip_address("64:ff9b:1::5db8:d70e")) == "local-use NAT64 address 64:ff9b:1::5db8:d70e"
    )


def test_embedded_forms_are_found_and_only_mapped_or_compatible_are_the_same_host() -> None:
    assert embedded_ipv4(ipaddress.ip_address("2002:7f00:1::1")) == ("6to4", ipaddress.IPv4Address("127.0.0.1"))
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None and embedded_ipv4(ipaddress.ip_address("::")) is None
    assert embedded_ipv4(ipaddress.ip_address("127.0.0.1")) is None
    assert same_host_ipv4(ipaddress.ip_address("::ffff:127.0.0.1")) == ipaddress.IPv4Address("127.0.0.1")
    assert same_host_ipv4(ipaddress.ip_address("2002:7f00:1::1")) is None


@pytest.mark.parametrize("address", ["2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "64:ff9b::7f00:1"])
def test_tunnelled_forms_of_loopback_are_refused_even_with_loopback_allow_listed(address: str) -> None:
    # The operator allowed the receiver on 127.0.0.1; a relay's address that lands there is not that receiver.
    ok, why = check("http://receiver.test/", address, allow=["127.0.0.1"])
    assert not ok and "embedding loopback address 127.0.0.1" in why, why


def test_other_spellings_of_an_allow_listed_host_are_that_host() -> None:
    assert check("http://receiver.test/", "::127.0.0.1", allow=["127.0.0.1"]) == (True, "ok")
    assert check("http://receiver.test/", "::ffff:127.0.0.1", allow=["127.0.0.1"]) == (True, "ok")
    assert not check("http://receiver.test/", "::127.0.0.1")[0]


@pytest.mark.parametrize("literal", ["[2002:7f00:1::1]", "[64:ff9b::7f00:1]", "[::ffff:7f00:1]"])
def test_literal_embedded_forms_are_refused_without_a_lookup(literal: str) -> None:
    ok, why = is_allowed_destination(f"http://{literal}:9/hook", [])
    assert not ok and "loopback address 127.0.0.1" in why


def test_https_only_refuses_plain_http() -> None:
    assert check("https://hooks.platform.example/", PUBLIC_V4, allow=[])[0]
    ok, why = is_allowed_destination(
        "http://hooks.platform.example/", [], resolver=resolves_to(PUBLIC_V4), https_only=True
    )
    assert not ok and "https" in why
    assert is_allowed_destination("https://a.example/", [], resolver=resolves_to(PUBLIC_V4), https_only=True)[0]
