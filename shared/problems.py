"""RFC 9457 problem details: every error leaves the API as application/problem+json, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("takedown.problems")


class Problem(Exception):
    """An error with an HTTP status and a stable code (`type` is /problems/<code>)."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        super().__init__(detail or title)


class NotFound(Problem):
    """What does not exist, or what the caller may not see (never 403 for another tenant's data)."""

    def __init__(self, what: str = "resource") -> None:
        super().__init__(404, "not-found", "Not Found", f"no such {what}")


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
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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
