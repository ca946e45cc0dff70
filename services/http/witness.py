"""The witness's HTTP app, apart from the service's: add-checkpoint as c2sp.org/tlog-witness, its key, its refusals.

A separate app because a witness is deployed on its own (another party's host, another database), yet here in the
HTTP edge so that its refusals take their status from the one table (problems.SERVICE_ERRORS) and every other
error leaves as problem+json like the service's. The protocol route answers in plain text, exactly as the spec.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response

from services.http import problems
from services.http.app import finish_standalone, operation_id
from services.http.schemas.witness import RefusalOut, RefusalsPage
from services.witness.errors import OldSizeMismatch, WitnessError
from services.witness.service import Witness
from services.witness.store import Refusal

# An old size line, 63 proof lines of 45 bytes and a checkpoint with a few signatures fit in 8 KiB.
MAX_BODY_BYTES = 16 * 1024
TLOG_SIZE = "text/x.tlog.size"
TAGS = [{"name": "witness", "description": "c2sp.org/tlog-witness, and the witness's public record"}]
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
# The witness's refusal codes and their statuses, from the one table.
_STATUS_OF_CODE = {
    cls.code: entry.status for cls, entry in problems.SERVICE_ERRORS.items() if issubclass(cls, WitnessError)
}


def _status(error: WitnessError) -> int:
    found = problems.problem_type(type(error))
    assert found is not None  # tests/api/test_problems_table.py: every witness error is in the table
    return found.status


def protocol_refusal(error: WitnessError) -> Response:
    """A refusal as c2sp.org/tlog-witness answers it: the status, and for a size mismatch the witness's size."""
    if isinstance(error, OldSizeMismatch):
        # Exactly the spec's media type: Starlette would append "; charset=utf-8" to a text/* media_type.
        return Response(f"{error.latest_size}\n", status_code=409, headers={"Content-Type": TLOG_SIZE})
    return PlainTextResponse(f"{error.reason}\n", status_code=_status(error))


def _refusal_out(refusal: Refusal) -> RefusalOut:
    return RefusalOut(
        id=refusal.id,
        at=refusal.at,
        origin=refusal.origin,
        status=_STATUS_OF_CODE.get(refusal.code, 400),
        code=refusal.code,
        reason=refusal.reason,
        old_size=refusal.old_size,
        checkpoint=refusal.note,
        proof=refusal.proof,
        latest_checkpoint=refusal.latest_note,
    )


def create_witness_app(witness: Witness, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The witness's app around a Witness."""
    app = FastAPI(
        title="Takedown witness",
        summary="A C2SP tlog-witness: cosigns checkpoints consistent with the latest it cosigned.",
        version="1",
        generate_unique_id_function=operation_id,
    )
    router = APIRouter(tags=["witness"])

    @router.post(
        "/add-checkpoint",
        response_class=PlainTextResponse,
        summary="Submit a checkpoint and a consistency proof; get a cosignature/v1 line",
        openapi_extra={"requestBody": {"required": True, "content": _TEXT}},
        responses={
            200: {"description": "the witness's cosignature line(s) (c2sp.org/tlog-cosignature)", "content": _TEXT},
            400: {"description": "malformed body, or old size beyond the checkpoint", "content": _TEXT},
            403: {"description": "no signature verifies with the log's key", "content": _TEXT},
            404: {"description": "a log this witness does not witness", "content": _TEXT},
            409: {
                "description": "old size is not the latest cosigned (body: that size), or same size another root",
                "content": {TLOG_SIZE: {"schema": {"type": "string"}}, **_TEXT},
            },
            422: {"description": "the consistency proof does not verify", "content": _TEXT},
            **problems.problem_responses(413, 503),
        },
    )
    async def add_checkpoint(request: Request) -> Response:
        """The old size line, the proof lines, an empty line, the signed checkpoint (c2sp.org/tlog-witness)."""
        body = await request.body()
        try:
            lines = await anyio.to_thread.run_sync(witness.add_checkpoint, body)
        except WitnessError as exc:
            return protocol_refusal(exc)
        return PlainTextResponse(lines)

    @router.get(
        "/vkey",
        response_class=PlainTextResponse,
        summary="The witness's cosignature/v1 verifier key",
        responses={200: {"description": "name+keyid+base64(0x04||key), then a newline", "content": _TEXT}},
    )
    def vkey() -> PlainTextResponse:
        """What a verifier pins to check this witness's cosignatures."""
        return PlainTextResponse(f"{witness.vkey}\n")

    @router.get(
        "/refusals",
        response_model=RefusalsPage,
        summary="Every refused signed checkpoint (evidence of a log's misbehaviour); anyone may read it",
        responses=problems.problem_responses(400, 422, 503),
    )
    def refusals(
        origin: Annotated[str | None, Query(description="only this log's")] = None,
        after: Annotated[int, Query(ge=0, description="the `next_after` of the page before")] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> RefusalsPage:
        """Refused submissions of checkpoints the log signed, oldest first, with the note each contradicted."""
        found = witness.refusals(origin, after, limit)
        return RefusalsPage(
            items=[_refusal_out(r) for r in found], next_after=found[-1].id if len(found) == limit else None
        )

    return finish_standalone(app, router, TAGS, max_body_bytes)
