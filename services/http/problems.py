"""RFC 9457 problem details: every error leaves the API as application/problem+json, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.notifier.deliveries import DeliveryNotFound, DeliveryPending
from services.orders.domain import DomainError
from services.orders.errors import IdempotencyConflict, InvalidCursor, InvalidOrder, OrderNotFound, UnknownPlatform
from services.registry.service import PlatformNameTaken, PlatformNotFound, RepresentativeRefused, WebhookUrlRefused
from services.sla.queries import InvalidSlaCursor
from shared.db import TransientError, UniqueViolation
from shared.eventstore import ConcurrencyError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("takedown.problems")


class Problem(Exception):
    """An error with an HTTP status and a stable code (`type` is /problems/<code>)."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        super().__init__(detail or title)


# Every refusal a service raises, and the status and title it leaves the API with. A service's error has a stable
# `code` (the problem type is /problems/<code>) and a message for people; what is not found and what the caller
# may not see are the same 404, never a 403 for another tenant's data.
SERVICE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    OrderNotFound: (404, "Not Found"),
    PlatformNotFound: (404, "Not Found"),
    DeliveryNotFound: (404, "Not Found"),
    InvalidCursor: (400, "Invalid cursor"),
    InvalidSlaCursor: (400, "Invalid cursor"),
    UnknownPlatform: (422, "Unknown platform"),
    InvalidOrder: (422, "Invalid order"),
    WebhookUrlRefused: (422, "Webhook URL refused"),
    RepresentativeRefused: (422, "Representative refused"),
    IdempotencyConflict: (409, "Idempotency conflict"),
    DomainError: (409, "Refused by the order's rules"),
    PlatformNameTaken: (409, "Platform name taken"),
    DeliveryPending: (409, "Delivery still pending"),
    ConcurrencyError: (409, "Conflict"),
    UniqueViolation: (409, "Conflict"),
    TransientError: (503, "Try again"),
}


def _code(exc: Exception) -> str:
    if isinstance(exc, (ConcurrencyError, UniqueViolation)):
        return "conflict"
    if isinstance(exc, TransientError):
        return "busy"
    return str(getattr(exc, "code", "error"))


def _detail(exc: Exception) -> str:
    if isinstance(exc, ConcurrencyError):
        return "the order kept changing; retry"
    if isinstance(exc, UniqueViolation):
        return "the same thing was recorded concurrently; retry"
    if isinstance(exc, TransientError):
        return "the database was busy; retry"
    return str(getattr(exc, "reason", None) or exc)


def problem_response(
    status: int, code: str, title: str, detail: str | None = None, instance: str | None = None, **extra: Any
) -> JSONResponse:
    """Build a problem+json response."""
    body: dict[str, Any] = {"type": "about:blank" if code == "http" else f"/problems/{code}", "title": title}
    body["status"] = status
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"location": [str(p) for p in e.get("loc", ())], "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def install(app: FastAPI) -> None:
    """Route every error raised in the app through problem+json."""

    @app.middleware("http")
    async def _refuse_nul(request: Request, call_next: Any) -> Any:
        # PostgreSQL text cannot hold NUL; an id or filter carrying one is a bad request, not a database error.
        if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b"").lower():
            return problem_response(400, "bad-request", "Bad Request", "NUL characters are not allowed in the URL")
        return await call_next(request)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.title, exc.detail, request.url.path, **exc.extra)

    async def _service_error(request: Request, exc: Exception) -> JSONResponse:
        status, title = next(SERVICE_ERRORS[t] for t in type(exc).__mro__ if t in SERVICE_ERRORS)
        return problem_response(status, _code(exc), title, _detail(exc), request.url.path)

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
        return problem_response(exc.status_code, "http", title, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal", "Internal Server Error", "the error has been logged", request.url.path)
