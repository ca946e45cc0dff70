"""FastAPI dependencies in one place: the container, the caller, and role checks as Annotated aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from services.bootstrap import Container
from services.http.problems import Problem
from shared.auth import Principal, Role, authenticate


def get_container(request: Request) -> Container:
    """The wired services of this process."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_principal(request: Request, container: ContainerDep) -> Principal:
    """The caller named by `Authorization: Bearer <key>`, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(401, "unauthenticated", "Unauthorized", "send Authorization: Bearer <api key>")
    with container.db.read() as conn:
        principal = authenticate(conn, key.strip())
    if principal is None:
        raise Problem(401, "unauthenticated", "Unauthorized", "unknown or revoked API key")
    return principal


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency that admits only these roles (403 otherwise: the endpoint, not the data, is off limits)."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Problem(403, "forbidden", "Forbidden", f"this endpoint is for: {', '.join(roles)}")
        return principal

    return check


Admin = Annotated[Principal, Depends(require("admin"))]
AdminOrAuditor = Annotated[Principal, Depends(require("admin", "auditor"))]
Issuer = Annotated[Principal, Depends(require("issuer"))]
PlatformRep = Annotated[Principal, Depends(require("platform"))]
Dashboard = Annotated[Principal, Depends(require("admin", "auditor", "issuer"))]
Reader = Annotated[Principal, Depends(require("admin", "auditor", "issuer", "platform"))]
