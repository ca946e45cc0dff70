"""Connecting to a checked address keeps HTTPS honest: the certificate is verified for the URL's host name."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notifier.sender import _tls, send, transport


def self_signed(tmp: Path, host: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_to_a_pinned_address_verifies_the_url_host(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "hook.platform.test")
    hosts: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        hosts.extend(line for line in head.split(b"\r\n") if line.lower().startswith(b"host:"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        async with transport(1, verify=ssl.create_default_context(cafile=str(cert))) as pool:
            ok = await send(pool, f"https://hook.platform.test:{port}/hook", {}, b"{}", 3, "127.0.0.1")
            wrong = await send(pool, f"https://other.platform.test:{port}/hook", {}, b"{}", 3, "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()
    assert ok.status_code == 200 and ok.error_kind is None
    assert hosts == [f"host: hook.platform.test:{port}".encode()]
    # The certificate names hook.platform.test only: another name on the same address must not be accepted.
    assert wrong.status_code is None and wrong.error_kind is not None


async def test_the_default_pool_verifies_certificates_against_the_ca_bundle(tmp_path: Path) -> None:
    # Every platform's pool shares one TLS context; sharing it must not loosen it: a self-signed certificate
    # that names the right host is still refused.
    cert, key = self_signed(tmp_path, "hook.platform.test")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        async with transport(1) as first, transport(1) as second:
            results = [
                await send(p, f"https://hook.platform.test:{port}/hook", {}, b"{}", 3, "127.0.0.1")
                for p in (first, second)
            ]
    finally:
        server.close()
        await server.wait_closed()
    assert [(r.status_code, r.error_kind) for r in results] == [(None, "connect"), (None, "connect")]


def test_the_trust_store_is_not_taken_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An SSL_CERT_FILE left in a worker's environment must neither swap the CA bundle nor break every pool.
    empty = tmp_path / "none.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    _tls.cache_clear()
    try:
        context = transport(1)._pool._ssl_context  # httpcore keeps the context it was given
        assert context is not None and context.cert_store_stats()["x509_ca"] > 0
    finally:
        _tls.cache_clear()
