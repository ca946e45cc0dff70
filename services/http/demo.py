"""The demo's webhook receiver, mounted only by `takedown run --demo`: it checks each push as a platform would."""

from __future__ import annotations

import logging

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from services.http.deps import ContainerDep
from services.http.problems import Problem, problem_responses
from services.webhooks.signing import verify

log = logging.getLogger("takedown.demo")
router = APIRouter(tags=["demo"])


@router.post(
    "/demo/receiver/{platform_id}",
    summary="The demo platform's webhook (demo only): verifies the Standard Webhooks signature",
    status_code=204,
    response_class=Response,
    responses={**problem_responses(401, 404, 422), 204: {"description": "Signed with the platform's secret: received"}},
)
async def demo_receiver(platform_id: str, request: Request, c: ContainerDep) -> Response:
    """Accept a push signed with the platform's current secret (a 2xx notifies the platform); refuse any other."""
    body = await request.body()
    secrets = await anyio.to_thread.run_sync(c.registry.signing_secrets, platform_id)
    if not verify(secrets, request.headers, body, int(c.clock.now().timestamp())):
        raise Problem(401, "unauthorized", "Unauthorized", "the push's webhook signature does not verify")
    log.info("demo receiver: push %s verified", request.headers.get("webhook-id"))
    return Response(status_code=204)
