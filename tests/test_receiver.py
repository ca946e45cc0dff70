"""The demo platform's receiver (`takedown demo-receiver`): 204 to a signed webhook, 401 to a forged one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from services.webhooks.receiver import make_server
from services.webhooks.signing import generate_secret, webhook_headers


@pytest.fixture
def secret() -> str:
    return generate_secret()


@pytest.fixture
def base(secret: str) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, secret)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_signed_delivery_is_accepted_and_a_forged_one_refused(base: str, secret: str) -> None:
    body = b'{"type":"order.issued","data":{}}'
    signed = webhook_headers([secret], "msg_1", 1_700_000_000, body)
    assert httpx.post(base, content=body, headers=signed).status_code == 204
    assert httpx.post(base, content=body + b" ", headers=signed).status_code == 401  # the body changed
    other = webhook_headers([generate_secret()], "msg_1", 1_700_000_000, body)
    assert httpx.post(base, content=body, headers=other).status_code == 401
    rotated = webhook_headers([generate_secret(), secret], "msg_1", 1_700_000_000, body)  # one of two signatures
    assert httpx.post(base, content=body, headers=rotated).status_code == 204
    assert httpx.get(base).status_code == 204
