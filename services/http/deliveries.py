"""REST routes of the notifier: the delivery and attempt log, and manual redelivery (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.http.deps import ROLE_CHECKED, Admin, ContainerDep, DeliveryId
from services.http.problems import problem_responses
from services.http.schemas.deliveries import DeliveryOut, DeliveryState
from services.http.schemas.orders import NUL_FREE
from services.notifier import deliveries

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


@router.get(
    "",
    summary="Deliveries and their attempt log (admin)",
    response_model=list[DeliveryOut],
    responses={**ROLE_CHECKED, **problem_responses(400, 422)},
)
def list_deliveries(
    principal: Admin,
    c: ContainerDep,
    order_id: Annotated[str | None, Query(max_length=36, pattern=NUL_FREE)] = None,
    platform: Annotated[str | None, Query(max_length=36, pattern=NUL_FREE)] = None,
    state: DeliveryState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Newest first, each with every attempt made."""
    with c.db.read() as conn:
        return deliveries.find(conn, order_id=order_id, platform_id=platform, state=state, limit=limit)


@router.post(
    "/{delivery_id}/redeliver",
    summary="Send a delivery again now, same webhook-id (admin)",
    response_model=DeliveryOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 409, 422, 503)},
)
def redeliver(delivery_id: DeliveryId, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """Start a fresh retry cycle for a delivery that is dead, cancelled or delivered."""
    with c.db.transaction() as conn:
        delivery = deliveries.redeliver(conn, delivery_id, c.clock.now())
    c.notifier.wake()
    return delivery
