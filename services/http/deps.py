"""FastAPI dependencies in one place: the container, the caller, and role checks as Annotated aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from services.bootstrap import Container
from services.http.problems import Problem, problem_responses
from shared.auth import Principal, Role

# The dependencies are coroutines unless they do I/O: FastAPI runs a plain function's dependency in the thread pool,
# one hand-off each (three per request, before the route's own), which cost more than the work.


async def get_container(request: Request) -> Container:
    """The wired services of this process."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


# Declares the scheme in the OpenAPI document; the 401 problem below is ours, not FastAPI's default.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="`Authorization: Bearer <key>`; each key has one role: admin, issuer, platform or auditor.",
)


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], container: ContainerDep
) -> Principal:
    """The caller named by `Authorization: Bearer <key>`, or 401."""
    if credentials is None:
        raise Problem(401, "unauthenticated", "Unauthorized", "send Authorization: Bearer <api key>")
    # A fresh cache entry answers in the loop; only a miss reads the key table, in the thread pool.
    principal = container.keys.cached(credentials.credentials)
    if principal is None:
        principal = await run_in_threadpool(container.keys.authenticate, credentials.credentials)
    if principal is None:
        raise Problem(401, "unauthenticated", "Unauthorized", "unknown, revoked or expired API key")
    return principal


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only these roles (403 otherwise: the endpoint, not the data, is off limits)."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Problem(403, "forbidden", "Forbidden", f"this endpoint is for: {', '.join(roles)}")
        return principal

    return check


# Each role alias and the error statuses its check can answer (a route adds its own).
Admin = Annotated[Principal, Depends(require("admin"))]
AdminOrAuditor = Annotated[Principal, Depends(require("admin", "auditor"))]
Issuer = Annotated[Principal, Depends(require("issuer"))]
PlatformRep = Annotated[Principal, Depends(require("platform"))]
Dashboard = Annotated[Principal, Depends(require("admin", "auditor", "issuer"))]
Reader = Annotated[Principal, Depends(require("admin", "auditor", "issuer", "platform"))]

AUTHENTICATED = problem_responses(401)  # every role may call it
ROLE_CHECKED = problem_responses(401, 403)  # only some roles may call it

# Ids in paths: opaque, but of the form and length the service issues (a longer one cannot exist).
OrderId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$", description="An order id")]
PlatformId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$", description="A platform id")]
KeyId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$", description="An API key's id")]
DeliveryId = Annotated[
    str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="A delivery id (its webhook-id)")
]
