"""Standard Webhooks signing, checked against the reference `standardwebhooks` verifier."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhooks.signing import generate_secret, sign, signature_header, verify, webhook_headers

BODY = json.dumps({"type": "order.issued", "timestamp": "2026-03-02T09:00:00Z", "data": {"id": "o1"}}).encode()


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret


def test_matches_the_published_standard_webhooks_example() -> None:
    # The example from the Standard Webhooks specification / svix documentation.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_the_reference_implementation() -> None:
    secret = generate_secret()
    timestamp = 1_700_000_000
    reference = Webhook(secret).sign("msg_1", datetime.fromtimestamp(timestamp, tz=UTC), BODY.decode())
    assert sign(secret, "msg_1", timestamp, BODY) == reference


def test_reference_verifier_accepts_our_headers() -> None:
    secret = generate_secret()
    headers = webhook_headers([secret], "msg_2", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "msg_2"


def test_rotation_both_old_only_and_new_only_receivers_verify() -> None:
    old, new = generate_secret(), generate_secret()
    headers = webhook_headers([new, old], "msg_3", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


@pytest.mark.parametrize("field", ["id", "timestamp", "body"])
def test_any_change_breaks_the_signature(field: str) -> None:
    secret = generate_secret()
    headers = webhook_headers([secret], "msg_4", int(time.time()), BODY)
    body = BODY
    if field == "id":
        headers["webhook-id"] = "msg_other"
    elif field == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    else:
        body = BODY.replace(b"o1", b"o2")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_unpadded_secret_is_accepted_like_the_reference() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(31))).decode().rstrip("=")
    assert sign(secret, "m", 1, b"{}") == Webhook(secret).sign("m", datetime.fromtimestamp(1, tz=UTC), "{}")


def test_secret_without_prefix_is_the_same_key() -> None:
    secret = generate_secret()
    assert sign(secret.removeprefix("whsec_"), "m", 1, b"{}") == sign(secret, "m", 1, b"{}")


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", ""])
def test_bad_secret_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        sign(bad, "m", 1, b"{}")


def test_no_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        signature_header([], "m", 1, b"{}")


@given(
    msg_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    body=st.text(max_size=200),
    key=st.binary(min_size=1, max_size=64),
)
def test_property_reference_verifier_accepts_any_message(msg_id: str, body: str, key: bytes) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    raw = body.encode()
    headers = webhook_headers([secret], msg_id, int(time.time()), raw)
    assert Webhook(secret).verify(raw, headers, json_parse=False) is None


def test_verify_accepts_what_the_reference_signs_and_nothing_changed() -> None:
    secret, other = generate_secret(), generate_secret()
    now = 1_700_000_000
    signed = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signed}
    assert verify([secret], headers, BODY, now)
    assert verify([other, secret], headers, BODY, now + 299)  # one secret of a rotation is enough
    assert not verify([other], headers, BODY, now)
    assert not verify([secret], headers, BODY + b" ", now)
    assert not verify([secret], {**headers, "webhook-id": "msg_2"}, BODY, now)
    assert not verify([secret], headers, BODY, now + 301)  # a replay after the tolerance
    assert not verify([secret], {**headers, "webhook-timestamp": "soon"}, BODY, now)
    assert not verify([secret], {k: v for k, v in headers.items() if k != "webhook-signature"}, BODY, now)
