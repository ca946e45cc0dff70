"""The receipts kit's HTTP app: the webhook a platform points the service at, and the kit's status.

A separate app, like the witness's: the kit runs on the platform's host with its own store. A refused signature
leaves as a 401 problem from the one table (problems.SERVICE_ERRORS), like every other error.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request

from services.http import problems
from services.http.app import finish_standalone, operation_id
from services.http.schemas.receipts import AlertOut, CheckpointSeen, ReceiptOut, StatusOut
from services.receipts.service import ReceiptsKit

MAX_BODY_BYTES = 1024 * 1024
TAGS = [{"name": "receipts", "description": "a platform's receipts kit: webhooks kept, the log checked"}]


def create_receipts_app(kit: ReceiptsKit, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The kit's app around a ReceiptsKit."""
    app = FastAPI(
        title="Takedown receipts kit",
        summary="Keeps every signed webhook and the log's proofs of its orders.",
        version="1",
        generate_unique_id_function=operation_id,
    )
    router = APIRouter(tags=["receipts"])

    @router.post(
        "/webhook",
        response_model=ReceiptOut,
        summary="Receive a webhook of the service (Standard Webhooks signature checked); keep it, then answer",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}},
        responses=problems.problem_responses(401, 413, 503),
    )
    async def webhook(request: Request) -> ReceiptOut:
        """Answered only once the receipt is stored: a 2xx is the kit's word that it has it."""
        body = await request.body()
        headers = dict(request.headers)
        new = await anyio.to_thread.run_sync(kit.receive, headers, body)
        return ReceiptOut(webhook_id=headers.get("webhook-id", ""), duplicate=not new)

    @router.get("/status", response_model=StatusOut, summary="What the kit holds, and every inconsistency it saw")
    def status() -> StatusOut:
        """`ok` is false once the log showed an inconsistency; `latest_alerts` carries the evidence."""
        found = kit.status()
        latest = found.pop("checkpoint")
        alerts = found.pop("latest_alerts")
        return StatusOut(
            **found,
            checkpoint=None if latest is None else CheckpointSeen(**latest),
            latest_alerts=[AlertOut(**vars(a)) for a in alerts],
        )

    return finish_standalone(app, router, TAGS, max_body_bytes)
