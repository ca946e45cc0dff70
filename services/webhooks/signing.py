"""Standard Webhooks signing (standardwebhooks.com): secrets, signatures and the request headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random_source
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    """Return a new endpoint secret, "whsec_" followed by base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random_source.token_bytes(SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    # Receivers (and the standardwebhooks library) accept unpadded base64, so we do too.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError("webhook secret is not valid base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the "v1,<base64 HMAC-SHA256>" signature of "{msg_id}.{timestamp}.{body}"."""
    signed_content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed_content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the webhook-signature value: one signature per secret, space-separated (rotation)."""
    if not secrets:
        raise ValueError("at least one webhook secret is required")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


# How far a receiver lets a push's timestamp be from its own clock (the Standard Webhooks libraries' default).
TOLERANCE_S = 300


def verify(
    secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: int, tolerance_s: int = TOLERANCE_S
) -> bool:
    """Whether a received push is signed by one of these secrets over these bytes, and its timestamp is recent.

    What a receiver checks (the demo's does): any one v1 signature of the header that matches one secret is enough,
    as during a rotation a push carries a signature per secret.
    """
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = [sign(secret, msg_id, int(stamp), body) for secret in secrets]
    given = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(g.encode(), e.encode()) for g in given for e in expected)


def webhook_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers of one delivery attempt: id, timestamp, signature and content type."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }
