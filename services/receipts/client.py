"""The kit's HTTP to the outside (thin): the service's API under the platform's key, and the platform's forward URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from services.receipts.errors import FetchFailed


class LogClient:
    """GETs of the service's API with the platform's API key."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _get(self, path: str, **params: Any) -> Any:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"GET {path}: {exc!r}") from exc
        if response.status_code != 200:
            raise FetchFailed(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    def checkpoint(self) -> str:
        """The latest checkpoint note, with the witnesses' cosignature lines."""
        return str(self._get("/v1/ledger/checkpoint")["note"])

    def rotations(self) -> list[str]:
        """The log's signed key rotation statements, oldest first (followed from the pinned key)."""
        chain = self._get("/v1/ledger/public-key").get("key_chain", [])
        return [str(k["rotation"]) for k in chain if k.get("rotation")]

    def consistency(self, first: int, second: int) -> list[str]:
        """The consistency proof between two tree sizes (base64 hashes)."""
        return list(self._get("/v1/ledger/proofs/consistency", first=first, second=second)["proof"])

    def inclusion(self, position: int, tree_size: int) -> dict[str, Any]:
        """The inclusion proof of the event at a position in the tree of a size."""
        return dict(self._get("/v1/ledger/proofs/inclusion", position=position, tree_size=tree_size))

    def events(self, order_id: str) -> list[dict[str, Any]]:
        """The order's events with their positions and leaf hashes."""
        return list(self._get(f"/v1/orders/{order_id}/events"))

    def leaves(self, order_id: str) -> dict[str, dict[str, Any]]:
        """The order's events' leaves (envelope and canonical bytes), by event id, from its evidence bundle."""
        bundle = self._get(f"/v1/orders/{order_id}/evidence")
        return {str(e["envelope"]["event_id"]): dict(e) for e in bundle.get("events", [])}

    def close(self) -> None:
        """Release the connections."""
        self.http.close()


def forward(client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """POST a receipt on to the platform's system as it came; None if it took it (2xx), else why not."""
    try:
        response = client.post(url, content=body, headers=dict(headers))
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not 200 <= response.status_code < 300:
        return f"status {response.status_code}"
    return None
