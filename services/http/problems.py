"""RFC 9457 problem details: every error leaves the API as application/problem+json, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, NotRequired

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic needs this TypedDict before Python 3.12

from services.keys.errors import KeyNotActive, KeyNotFound, KeyRefused
from services.ledger.errors import (
    EvidenceNotFound,
    InvalidRange,
    NoCheckpoint,
    NotYetInLedger,
    PositionNotFound,
    TreeTooSmall,
)
from services.notifier.errors import DeliveryNotFound, DeliveryPending
from services.orders.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidCursor,
    InvalidOrder,
    OrderNotFound,
    UnknownPlatform,
)
from services.receipts.errors import BadSignature
from services.registry.errors import (
    PlatformNameTaken,
    PlatformNotFound,
    RepresentativeConflict,
    RepresentativeRefused,
    WebhookUrlRefused,
)
from services.sla.errors import InvalidSlaCursor
from services.transparency.errors import AmendmentRefused, MonthNotFinished, NotPublished, ReportError
from services.witness.errors import (
    BadProof,
    MalformedSubmission,
    NotTrusted,
    OldSizeBeyond,
    OldSizeMismatch,
    RootMismatch,
    UnknownLog,
)
from shared.db import TransientError, UniqueViolation
from shared.eventstore import ConcurrencyError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("takedown.problems")


class ValidationIssue(TypedDict):
    """One reason a request does not match the schema."""

    location: list[str]
    message: str
    type: str


class ProblemDocument(TypedDict):
    """An RFC 9457 problem: `type` is /problems/<code> (or about:blank), `errors` lists validation issues."""

    type: str
    title: str
    status: int
    detail: NotRequired[str]
    instance: NotRequired[str]
    errors: NotRequired[list[ValidationIssue]]


# What each status means wherever a route declares it; every one is sent as application/problem+json.
PROBLEM_STATUSES: dict[int, str] = {
    400: "Malformed JSON, a cursor this API never returned, or a NUL character in the URL",
    401: "No API key, or an unknown, revoked or expired one",
    403: "The API key's role may not use this endpoint",
    404: "No such resource, or not one this caller may see",
    409: "Refused by the current state (the resource's rules, a duplicate, or a concurrent change)",
    413: "The request body is larger than the configured limit",
    415: "The request body is not JSON (send Content-Type: application/json)",
    422: "The request does not match the schema (`errors` lists each issue), or refers to something unknown",
    503: "The database was busy; retry after the Retry-After seconds",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer these error statuses, each with an application/problem+json body."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": PROBLEM_STATUSES[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        declared[status] = response
    return declared


def problem_schemas() -> dict[str, Any]:
    """The JSON Schemas of the problem document and its parts, for the OpenAPI document's components."""
    schema = TypeAdapter(ProblemDocument).json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    schema["title"] = "Problem"
    return {**definitions, "Problem": schema}


class Problem(Exception):
    """An error with an HTTP status and a stable code (`type` is /problems/<code>)."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        super().__init__(detail or title)


class ProblemType(NamedTuple):
    """How one kind of service error leaves the API: its status and title, and where the error says neither
    (the store's errors, which are not refusals of one service), its code and a fixed detail."""

    status: int
    title: str
    code: str | None = None  # None: the error's own stable `code`
    detail: str | None = None  # None: the error's message


# Every refusal a service raises, and the problem it leaves the API as: the one table (tests/api/
# test_problems_table.py fails on an error class of services/ or shared/ that is missing). A service's error has a
# stable `code` (the problem type is /problems/<code>) and a message for people; what is not found and what the
# caller may not see are the same 404, never a 403 for another tenant's data.
SERVICE_ERRORS: dict[type[Exception], ProblemType] = {
    OrderNotFound: ProblemType(404, "Not Found"),
    PlatformNotFound: ProblemType(404, "Not Found"),
    DeliveryNotFound: ProblemType(404, "Not Found"),
    KeyNotFound: ProblemType(404, "Not Found"),
    PositionNotFound: ProblemType(404, "Not Found"),
    EvidenceNotFound: ProblemType(404, "Not Found"),
    NoCheckpoint: ProblemType(404, "No Checkpoint Yet"),
    NotPublished: ProblemType(404, "Not Published"),
    InvalidCursor: ProblemType(400, "Invalid cursor"),
    InvalidSlaCursor: ProblemType(400, "Invalid cursor"),
    UnknownPlatform: ProblemType(422, "Unknown platform"),
    InvalidOrder: ProblemType(422, "Invalid order"),
    WebhookUrlRefused: ProblemType(422, "Webhook URL refused"),
    RepresentativeRefused: ProblemType(422, "Representative refused"),
    InvalidRange: ProblemType(422, "Invalid Range"),
    KeyRefused: ProblemType(422, "Key refused"),
    ReportError: ProblemType(422, "Invalid report"),
    IdempotencyConflict: ProblemType(409, "Idempotency conflict"),
    DomainError: ProblemType(409, "Refused by the order's rules"),
    PlatformNameTaken: ProblemType(409, "Platform name taken"),
    RepresentativeConflict: ProblemType(409, "Conflicts with the registration"),
    DeliveryPending: ProblemType(409, "Delivery still pending"),
    KeyNotActive: ProblemType(409, "Key not active"),
    # The command line's (`takedown transparency publish|amend`); no route publishes.
    MonthNotFinished: ProblemType(409, "Month not finished"),
    AmendmentRefused: ProblemType(422, "Amendment refused"),
    TreeTooSmall: ProblemType(409, "Tree Too Small"),
    NotYetInLedger: ProblemType(409, "Not Yet In The Ledger"),
    ConcurrencyError: ProblemType(409, "Conflict", "conflict", "the order kept changing; retry"),
    UniqueViolation: ProblemType(409, "Conflict", "conflict", "the same thing was recorded concurrently; retry"),
    TransientError: ProblemType(503, "Try again", "busy", "the database was busy; retry"),
    # The witness's protocol route answers these in plain text with the status c2sp.org/tlog-witness names.
    MalformedSubmission: ProblemType(400, "Malformed submission"),
    OldSizeBeyond: ProblemType(400, "Old size beyond the checkpoint"),
    NotTrusted: ProblemType(403, "Not signed by the log"),
    UnknownLog: ProblemType(404, "Unknown log"),
    OldSizeMismatch: ProblemType(409, "Old size is not the latest cosigned"),
    RootMismatch: ProblemType(409, "Same size, another root"),
    BadProof: ProblemType(422, "Consistency proof does not verify"),
    # The receipts kit's webhook route: a push not signed with the platform's secret is not kept.
    BadSignature: ProblemType(401, "Bad webhook signature"),
}


def problem_type(error: type[Exception]) -> ProblemType | None:
    """The table's entry for this error class: its own, or that of the nearest class it derives from."""
    return next((SERVICE_ERRORS[t] for t in error.__mro__ if t in SERVICE_ERRORS), None)


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build a problem+json response (`headers` are added, e.g. the Allow of a 405)."""
    body: dict[str, Any] = {"type": "about:blank" if code == "http" else f"/problems/{code}", "title": title}
    body["status"] = status
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    sent = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "1"} if status == 503 else {}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers={**sent, **(headers or {})})


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"location": [str(p) for p in e.get("loc", ())], "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Every method that one of these routes answers on this path (the `Allow` of a 405)."""
    methods: set[str] = set()
    for route in routes:
        template, route_methods = getattr(route, "path", None), getattr(route, "methods", None)
        if template is not None and route_methods and compile_path(template)[0].match(path):
            methods.update(route_methods)
    return sorted(methods)


def is_json_media_type(content_type: str) -> bool:
    """Whether a Content-Type is JSON (application/json or application/<anything>+json, any parameters)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _unreadable(scope: Scope, json_bodies: bool = True) -> JSONResponse | None:
    """The refusal of a request the app cannot read (None: it can); `json_bodies`: a body must be JSON."""
    if "\x00" in scope["path"] or b"%00" in scope["query_string"].lower():
        return problem_response(
            400, "bad-request", "Bad Request", "NUL characters are not allowed in the URL", scope["path"]
        )
    if not json_bodies:
        return None
    headers = dict(scope.get("headers") or [])
    has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
    # No Content-Type at all is read as JSON, as FastAPI does; one that says otherwise is refused.
    content_type = headers.get(b"content-type")
    if has_body and content_type is not None and not is_json_media_type(content_type.decode("latin-1")):
        return problem_response(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            "request bodies are JSON: send Content-Type: application/json",
            scope["path"],
        )
    return None


def install(app: FastAPI, routers: Iterable[APIRouter] = (), *, json_bodies: bool = True) -> None:
    """Route every error raised in the app through problem+json; a 405's Allow also reads the routes of `routers`.

    `json_bodies`: refuse request bodies that are not JSON with 415 (off for the witness, whose protocol is text).
    """
    included = list(routers)

    class _RefuseUnreadable:
        """Requests the app cannot read, refused before routing: a NUL in the URL (PostgreSQL text cannot hold it;
        an id or filter carrying one is a bad request, not a database error) and a body that is not JSON (FastAPI
        would hand its bytes to the schema and answer 422 for what is a wrong media type, 415).

        Pure ASGI: a BaseHTTPMiddleware would run every request through an extra task and stream.
        """

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                refusal = _unreadable(scope, json_bodies)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app.add_middleware(_RefuseUnreadable)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.title, exc.detail, request.url.path, **exc.extra)

    async def _service_error(request: Request, exc: Exception) -> JSONResponse:
        found = problem_type(type(exc))
        assert found is not None  # registered below for the table's classes only
        code = found.code or str(getattr(exc, "code", "error"))
        return problem_response(found.status, code, found.title, found.detail or str(exc), request.url.path)

    for error in SERVICE_ERRORS:
        app.add_exception_handler(error, _service_error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400, "malformed-json", "Malformed JSON", "the body is not valid JSON", request.url.path
            )
        return problem_response(
            422,
            "validation",
            "Invalid request",
            "the request does not match the schema",
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}.get(exc.status_code, "Error")
        # exc.headers carries what the status requires, e.g. the Allow header of a 405 (RFC 9110); Starlette's
        # names only the methods of the first route on the path, so a 405 lists those of every route on it.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            routes = [*request.app.routes, *(route for router in included for route in router.routes)]
            headers["Allow"] = ", ".join(allowed_methods(routes, request.url.path)) or headers.get("Allow", "")
        return problem_response(exc.status_code, "http", title, str(exc.detail), request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal", "Internal Server Error", "the error has been logged", request.url.path)
