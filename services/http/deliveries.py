"""REST routes of the notifier: the delivery and attempt log, and manual redelivery (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.http.deps import ROLE_CHECKED, Admin, ContainerDep, DeliveryId
from services.http.problems import problem_responses
from services.http.schemas.deliveries import DeliveryOut, DeliveryState
from services.http.schemas.orders import NUL_FREE

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
) -> list[DeliveryOut]:
    """Newest first, each with every attempt made."""
    found = c.deliveries.find(order_id=order_id, platform_id=platform, state=state, limit=limit)
    return [DeliveryOut.model_validate(d) for d in found]


@router.post(
    "/{delivery_id}/redeliver",
    summary="Send a delivery again now, same webhook-id (admin)",
    response_model=DeliveryOut,
    responses={**ROLE_CHECKED, **problem_responses(400, 404, 409, 422, 503)},
)
def redeliver(delivery_id: DeliveryId, principal: Admin, c: ContainerDep) -> DeliveryOut:
    """Start a fresh retry cycle for a delivery that is dead, cancelled or delivered."""
    return DeliveryOut.model_validate(c.deliveries.redeliver(delivery_id))
