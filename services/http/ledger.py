"""REST routes of the ledger: the signed checkpoint, the verifier key, consistency and inclusion proofs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from services.http.deps import ContainerDep, require
from services.http.problems import Problem, problem_responses
from services.ledger.errors import InvalidRange, LedgerError, NoCheckpoint, PositionNotFound, TreeTooSmall
from services.ledger.service import StreamVisibility
from shared.auth import Principal

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

# Positions and tree sizes are BIGINTs in the store; a larger number cannot name anything.
MAX_INDEX = 2**63 - 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ----------------------------------------------------------------------------------------------- errors

# The ledger's errors as problem documents: (status, code, title). The one place to adapt if the edge moves.
_PROBLEMS: dict[type[LedgerError], tuple[int, str, str]] = {
    TreeTooSmall: (409, "tree-too-small", "Tree Too Small"),
    PositionNotFound: (404, "not-found", "Not Found"),
    NoCheckpoint: (404, "no-checkpoint", "No Checkpoint Yet"),
    InvalidRange: (422, "invalid-range", "Invalid Range"),
}


@contextmanager
def _as_problems() -> Iterator[None]:
    """Turn the ledger's own errors into RFC 9457 problems at the HTTP edge."""
    try:
        yield
    except LedgerError as exc:
        mapped = _PROBLEMS.get(type(exc))
        if mapped is None:
            raise
        status, code, title = mapped
        raise Problem(status, code, title, str(exc)) from exc


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can return (application/problem+json)."""
    return problem_responses(*statuses)


# ----------------------------------------------------------------------------------------------- models


class CheckpointOut(BaseModel):
    """A signed checkpoint (c2sp.org/tlog-checkpoint) and what it states."""

    origin: str
    tree_size: int
    root_hash: str = Field(description="base64 SHA-256 root")
    note: str = Field(description="the signed note, verifiable with the key from /v1/ledger/public-key")
    created_at: datetime


class PublicKeyOut(BaseModel):
    """The note verifier key of the checkpoint signer."""

    verifier_key: str = Field(description="<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>")
    key_name: str
    key_hash: str
    algorithm: str = "ed25519"


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof between two tree sizes."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class InclusionOut(BaseModel):
    """RFC 9162 inclusion proof of one event (leaf index = position - 1)."""

    position: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str]


# ----------------------------------------------------------------------------------------------- dependencies


def stream_visibility(c: ContainerDep) -> StreamVisibility:
    """Who may see which stream's events: given by the wiring, so the ledger reads no other service's tables."""
    return c.ledger.stream_visible


ProofReader = Annotated[Principal, Depends(require("admin", "auditor", "platform"))]
Visibility = Annotated[StreamVisibility, Depends(stream_visibility)]


# ----------------------------------------------------------------------------------------------- routes


@router.get(
    "/checkpoint",
    operation_id="ledger_checkpoint",
    summary="The latest signed checkpoint (public)",
    responses=_errors(404),
)
def get_checkpoint(c: ContainerDep) -> CheckpointOut:
    """The newest checkpoint the ledger has signed."""
    with _as_problems():
        cp = c.ledger.latest_checkpoint()
    return CheckpointOut(
        origin=cp.origin, tree_size=cp.tree_size, root_hash=_b64(cp.root), note=cp.note, created_at=cp.created_at
    )


@router.get("/public-key", operation_id="ledger_public_key", summary="The checkpoint verifier key (public)")
def get_public_key(c: ContainerDep) -> PublicKeyOut:
    """The signed-note verifier key of the checkpoint signer."""
    verifier = c.ledger.verifier
    return PublicKeyOut(verifier_key=verifier.verifier_key, key_name=verifier.name, key_hash=verifier.key_hash.hex())


@router.get(
    "/proofs/consistency",
    operation_id="ledger_consistency_proof",
    summary="Consistency proof between two tree sizes (public)",
    responses=_errors(400, 409, 422),
)
def get_consistency(
    c: ContainerDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size, at most `second`")],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size")],
) -> ConsistencyOut:
    """Proof that the tree of `first` leaves is a prefix of the tree of `second` leaves."""
    with _as_problems():
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
    responses=_errors(400, 401, 403, 404, 409, 422),
)
def get_inclusion(
    c: ContainerDep,
    principal: ProofReader,
    visible: Visibility,
    position: Annotated[int, Query(ge=1, le=MAX_INDEX, description="an event's position, at most `tree_size`")],
    tree_size: Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size")],
) -> InclusionOut:
    """The audit path of the event at `position` against the tree of `tree_size` leaves."""
    with _as_problems():
        p = c.ledger.inclusion(position, tree_size)
        # Another tenant's event is "not found", never "forbidden": its existence is not the caller's business.
        if principal.role == "platform" and not visible(principal, p.stream_id):
            raise PositionNotFound(position)
    return InclusionOut(
        position=p.position,
        leaf_index=p.index,
        tree_size=p.tree_size,
        leaf_hash=_b64(p.leaf_hash),
        root_hash=_b64(p.root),
        proof=[_b64(h) for h in p.proof],
    )
