"""A demo platform's webhook receiver: logs each delivery, checks its Standard Webhooks signature if given the secret."""

from __future__ import annotations

import hmac
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.webhooks.signing import sign

log = logging.getLogger("takedown.demo_receiver")
MAX_BODY = 1024 * 1024


def signature_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of the `webhook-signature` values is the signature of this id, timestamp and body."""
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    expected = sign(secret, msg_id, int(timestamp), body)
    return any(hmac.compare_digest(given, expected) for given in headers.get("webhook-signature", "").split())


def make_server(host: str, port: int, secret: str | None) -> ThreadingHTTPServer:
    """An HTTP server answering 204 to each webhook (401 to a bad signature when `secret` is given)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if secret is not None and not signature_valid(secret, headers, body):
                log.warning("refused webhook %s: bad signature", headers.get("webhook-id"))
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            try:
                kind = json.loads(body).get("type")
            except (ValueError, AttributeError):
                kind = None
            log.info("webhook %s received: %s (%d bytes)", headers.get("webhook-id"), kind, len(body))
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()

        def do_GET(self) -> None:  # the container's health check
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per delivery above, through the service's logging

    return ThreadingHTTPServer((host, port), Handler)
