"""A platform simulator on 127.0.0.1: receives the webhooks, fails some of them, and answers orders over the API.

What it does with an order is fixed by the number at the end of the order's issuer reference (`plan`), so a test
knows in advance which orders end acknowledged and removed, contested, or ignored. It acts after answering the
webhook, through the API's front door, trying the next front URL when a connection fails (an API process may be
killed under it); a 409 to a repeat after such a failure means the first attempt went through.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.notifier.receiver import Receiver, _head, _read_request

# n % 10 -> what the platform does with order n: answer the webhook (first attempt), then act on the order.
PLANS: dict[int, tuple[str, str]] = {
    0: ("ok", "remove"),
    1: ("ok", "remove"),
    2: ("ok", "remove"),
    3: ("ok", "restrict"),
    4: ("ok", "remove"),
    5: ("ok", "contest"),
    6: ("500", "remove"),
    7: ("429", "remove"),
    8: ("timeout", "ignore"),
    9: ("ok", "ignore"),
}


def plan(issuer_reference: str) -> tuple[str, str]:
    """How the platform answers the first webhook of this order, and what it then does."""
    return PLANS[int(issuer_reference.rsplit("-", 1)[1]) % 10]


class PlatformSimulator(Receiver):
    """Platforms /p0, /p1, ...: each webhook path acts with that platform's API key."""

    def __init__(self, fronts: list[str], keys: dict[str, str], timeout_s: float) -> None:
        super().__init__()
        self.fronts = fronts
        self.keys = keys  # path -> the platform's API key
        self.timeout_s = timeout_s
        self._turn = itertools.count()
        self._seen: set[str] = set()
        self._state_lock = threading.Lock()
        self.answers: Counter[str] = Counter()  # how webhooks were answered
        self.acted: dict[str, str] = {}  # order id -> what was done
        self.errors: list[str] = []
        self.trying: dict[str, str] = {}  # order id -> the call under way (shown when a test times out)
        self._client: httpx.AsyncClient | None = None

    def counts(self) -> dict[str, int]:
        with self._state_lock:
            return dict(Counter(self.acted.values()))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            body: dict[str, Any] = json.loads(request.body)
            wid = request.headers.get("webhook-id", "")
            with self._state_lock:
                first = wid not in self._seen
                self._seen.add(wid)
            received = datetime.now(UTC)  # by the platform's clock, before it answers the webhook
            order = body["data"]["order"]
            answer, then = plan(order["issuer_reference"])
            if body["type"] != "order.issued" or not first:
                answer = "ok"
            with self._state_lock:
                self.answers[answer] += 1
            if answer == "timeout":
                await asyncio.sleep(self.timeout_s + 1)  # the notifier gives up on it and retries
                return
            status, headers = {"ok": (200, {}), "500": (500, {}), "429": (429, {"retry-after": "1"})}[answer]
            writer.write(_head(status, {"content-length": "0", **headers}))
            await writer.drain()
            if status == 200 and body["type"] == "order.issued" and then != "ignore":
                asyncio.get_running_loop().create_task(self._act(request.path, order, then, received))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - a test helper reports every failure to the test
            with self._state_lock:
                self.errors.append(f"webhook: {exc!r}")
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _act(self, path: str, order: dict[str, Any], then: str, received: datetime) -> None:
        order_id = order["id"]
        with self._state_lock:
            if order_id in self.acted:
                return  # a redelivery of the same order
            self.acted[order_id] = "pending"
        try:
            if then == "contest":
                await self._post(path, order_id, "contest", {"grounds": "not_illegal", "detail": "satire"})
            else:
                await self._post(path, order_id, "acknowledge", {})
                # Removed on receipt, by the platform's own clock: before the service recorded the webhook's
                # answer as the notice, and read off another clock than any API process's (CLAIM_SKEW takes both).
                now = received.isoformat()
                outcome = {"remove": "removed", "restrict": "restricted"}[then]
                items = [{"item_id": i["item_id"], "outcome": outcome, "actioned_at": now} for i in order["items"]]
                await self._post(path, order_id, "outcomes", {"outcomes": items})
            with self._state_lock:
                self.acted[order_id] = then
        except Exception as exc:  # noqa: BLE001
            with self._state_lock:
                self.errors.append(f"{order_id} {then}: {exc!r}")

    async def _post(self, path: str, order_id: str, command: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The order document of a command's answer (None: a repeat found it done already)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        headers = {"Authorization": f"Bearer {self.keys[path]}"}
        for attempt in range(20):
            front = self.fronts[next(self._turn) % len(self.fronts)]
            self.trying[order_id] = f"{command} attempt {attempt} to {front}"
            try:
                response = await self._client.post(
                    f"{front}/v1/orders/{order_id}/{command}", json=body, headers=headers
                )
            except httpx.TransportError:
                await asyncio.sleep(0.2)
                continue
            if response.status_code == 200:
                self.trying.pop(order_id, None)
                document: dict[str, Any] = response.json()
                return document
            if attempt and response.status_code == 409:  # the first try went through before its answer was lost
                self.trying.pop(order_id, None)
                return None
            if response.status_code in (502, 503, 504):
                await asyncio.sleep(0.2)  # no live upstream for a moment
                continue
            raise AssertionError(f"{command} answered {response.status_code}: {response.text}")
        raise AssertionError(f"{command} of {order_id}: no API answered")
