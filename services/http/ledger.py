"""REST routes of the ledger: the signed checkpoint, the verifier key, consistency and inclusion proofs."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.http.deps import ContainerDep, require
from services.http.problems import problem_responses
from services.http.schemas.ledger import ChainKeyOut, CheckpointOut, ConsistencyOut, InclusionOut, PublicKeyOut
from services.ledger.checkpoints import Checkpoint
from services.ledger.errors import PositionNotFound
from services.ledger.service import StreamVisibility
from services.ledger.tree import InclusionProof
from shared.auth import Principal
from shared.eventstore.writer import public_key_text

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

# Positions and tree sizes are BIGINTs in the store; a larger number cannot name anything.
MAX_INDEX = 2**63 - 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checkpoint_out(cp: Checkpoint) -> CheckpointOut:
    """A checkpoint as the API answers it (the ledger's routes and the publications' proofs)."""
    return CheckpointOut(
        origin=cp.origin, tree_size=cp.tree_size, root_hash=_b64(cp.root), note=cp.note, created_at=cp.created_at
    )


def inclusion_out(p: InclusionProof) -> InclusionOut:
    """An inclusion proof as the API answers it."""
    return InclusionOut(
        position=p.position,
        leaf_index=p.index,
        tree_size=p.tree_size,
        leaf_hash=_b64(p.leaf_hash),
        root_hash=_b64(p.root),
        proof=[_b64(h) for h in p.proof],
    )


# ----------------------------------------------------------------------------------------------- dependencies


async def stream_visibility(c: ContainerDep) -> StreamVisibility:
    """Who may see which stream's events: given by the wiring, so the ledger reads no other service's tables."""
    return c.ledger.stream_visible


ProofReader = Annotated[Principal, Depends(require("admin", "auditor", "platform"))]
Visibility = Annotated[StreamVisibility, Depends(stream_visibility)]


# ----------------------------------------------------------------------------------------------- routes


@router.get(
    "/checkpoint",
    operation_id="ledger_checkpoint",
    summary="The latest signed checkpoint, with the witnesses' cosignatures (public)",
    responses=problem_responses(404),
)
def get_checkpoint(c: ContainerDep) -> CheckpointOut:
    """The newest checkpoint the ledger has signed, its note carrying the cosignature lines the witnesses sent."""
    return checkpoint_out(c.ledger.cosigned_checkpoint())


@router.get("/public-key", operation_id="ledger_public_key", summary="The checkpoint verifier key (public)")
def get_public_key(c: ContainerDep) -> PublicKeyOut:
    """The signed-note verifier key of the checkpoint signer, and the chain of keys with their rotations."""
    chain = c.ledger.stored_keys()
    verifier = chain[-1].verifier
    writers = [public_key_text(c.store.writer.public_key)] if c.store.writer is not None else []
    return PublicKeyOut(
        verifier_key=verifier.verifier_key,
        key_name=verifier.name,
        key_hash=verifier.key_hash.hex(),
        origin=c.ledger.origin,
        key_chain=[
            ChainKeyOut(verifier_key=k.verifier.verifier_key, from_tree_size=k.from_size, rotation=k.statement)
            for k in chain
        ],
        writer_keys=writers,
    )


@router.get(
    "/proofs/consistency",
    operation_id="ledger_consistency_proof",
    summary="Consistency proof between two tree sizes (public)",
    responses=problem_responses(400, 409, 422),
)
def get_consistency(
    c: ContainerDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size, at most `second`")],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size")],
) -> ConsistencyOut:
    """Proof that the tree of `first` leaves is a prefix of the tree of `second` leaves."""
    p = c.ledger.consistency(first, second)
    return ConsistencyOut(
        first=p.first,
        second=p.second,
        first_root=_b64(p.first_root),
        second_root=_b64(p.second_root),
        proof=[_b64(h) for h in p.proof],
    )


@router.get(
    "/proofs/inclusion",
    operation_id="ledger_inclusion_proof",
    summary="Inclusion proof of one event (auditor, admin; a platform for its own orders)",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def get_inclusion(
    c: ContainerDep,
    principal: ProofReader,
    visible: Visibility,
    position: Annotated[int, Query(ge=1, le=MAX_INDEX, description="an event's position, at most `tree_size`")],
    tree_size: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size")],
) -> InclusionOut:
    """The audit path of the event at `position` against the tree of `tree_size` leaves."""
    p = c.ledger.inclusion(position, tree_size)
    # Another tenant's event is "not found", never "forbidden": its existence is not the caller's business.
    if not visible(principal, p.stream_id):
        raise PositionNotFound(position)
    return inclusion_out(p)
