"""GET /v1/orders/{id}/evidence: one verifiable document about an order (built by services/ledger/evidence.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.http.deps import ContainerDep, OrderId, Reader
from services.http.problems import problem_responses
from services.http.schemas.evidence import EvidenceBundle

router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.get(
    "/{order_id}/evidence",
    operation_id="order_evidence",
    summary="Evidence bundle: events with inclusion proofs, one signed checkpoint, deliveries, who was on record",
    response_model=EvidenceBundle,
    responses=problem_responses(400, 401, 404, 409, 422),
)
def get_evidence(order_id: OrderId, principal: Reader, c: ContainerDep) -> JSONResponse:
    """One JSON document that `takedown ledger verify-bundle FILE --key KEY` checks offline (README: Ledger)."""
    # Returned as built: the attestation signs exactly these values, so nothing may re-serialise them on the way out.
    return JSONResponse(c.evidence.bundle(principal, order_id))
