"""The HTTP application: routers of every service, problem+json errors, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from sqlalchemy import text

from services.bootstrap import Container
from services.http import problems
from services.http.bodylimit import BodyLimitMiddleware
from services.http.dashboard import router as dashboard_router
from services.http.deliveries import router as deliveries_router
from services.http.demo import router as demo_router
from services.http.deps import ContainerDep
from services.http.evidence import router as evidence_router
from services.http.keys import router as keys_router
from services.http.ledger import router as ledger_router
from services.http.orders import router as orders_router
from services.http.platforms import router as platforms_router
from services.http.requestid import RequestIdMiddleware
from services.http.schemas.operations import Health, Readiness
from services.http.schemas.platforms import obliged_rule
from services.http.schemas.webhooks import OrderEscalatedWebhook
from services.http.sla import router as sla_router
from services.http.transparency import router as transparency_router
from services.metrics import scrape
from services.metrics.server import REFUSALS as METRICS_REFUSALS
from services.metrics.server import refusal as metrics_refusal
from shared.migrate import current_revision, head_revision


def operation_id(route: APIRoute) -> str:
    """An operation's id is its route's name (the function's): short and stable, e.g. `issue_order`."""
    return route.name


def finish_standalone(app: FastAPI, router: APIRouter, tags: list[dict[str, str]], max_body_bytes: int) -> FastAPI:
    """Give a small app of its own (the witness, the receipts kit) the API's edge: problem+json errors, the body
    limit, request ids, and problems declared by reference in its OpenAPI document."""
    problems.install(app, [router], json_bodies=False)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(router)

    def openapi() -> dict[str, Any]:
        # Problems are declared by reference (problems.problem_responses): their schemas join the components.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes, tags=tags
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(problems.problem_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app(container: Container, run_workers: bool | None = None, demo: bool = False) -> FastAPI:
    """Build the API around a container; `run_workers` starts the in-process sequencer (and notifier); `demo` mounts
    the demo platform's webhook receiver."""
    workers = container.settings.embedded_workers if run_workers is None else run_workers

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in this loop's thread pool: sized to the cores, not anyio's default of 40.
        threads = container.settings.http_threads or 4 * (os.cpu_count() or 1)
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        # The ledger's stored identity, settled (or checked against the settings) now: a misconfigured origin stops
        # the process at start-up instead of failing its first ledger request.
        container.ledger.identity()
        stop = asyncio.Event()
        notifier: asyncio.Task[None] | None = None
        if workers:
            container.sequencer.start()
            container.projections.start()
            container.scheduler.start()
            container.ledger.start()
            notifier = asyncio.create_task(container.notifier.run(stop))
        try:
            yield
        finally:
            stop.set()
            if notifier is not None:
                await notifier
            container.sequencer.stop()
            container.projections.stop()
            container.scheduler.stop()
            container.ledger.stop()

    production = container.settings.production
    app = FastAPI(
        # In production the interactive pages are off (they load their script from a CDN, and map the API for
        # anyone who reaches the port); /openapi.json, the contract clients read, stays.
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
        title="Takedown orders",
        version="0.1.0",
        summary="Takedown orders to platforms: intake, signed webhooks, SLA and a tamper-evident record.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.container = container
    head = head_revision(container.db.engine)  # the code's newest migration: fixed for the process's life
    routers = [
        platforms_router,
        orders_router,
        deliveries_router,
        sla_router,
        ledger_router,
        evidence_router,
        transparency_router,
        dashboard_router,
        keys_router,
        *([demo_router] if demo else []),
    ]
    problems.install(app, routers)
    app.add_middleware(BodyLimitMiddleware, max_bytes=container.settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # added last, so outermost: a 413 carries the request id too
    for router in routers:
        app.include_router(router)

    @app.webhooks.post(
        "order.escalated",
        summary="An escalation level fired (to the platform and the supervisor)",
        responses={
            200: {"description": "any 2xx: delivered"},
            "default": {"description": "anything else: the attempt failed and is retried with the same webhook-id"},
        },
    )
    def order_escalated(body: OrderEscalatedWebhook) -> None:
        """Signed as every webhook (Standard Webhooks); `data.escalation` states the level and the reason."""

    @app.get("/healthz", tags=["operations"], summary="Liveness", response_model=Health)
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database reachable, migrations current",
        response_model=Readiness,
        response_model_exclude_unset=True,
        responses={503: {"model": Readiness, "description": "Not ready: the database is unreachable or behind"}},
    )
    def readiness(c: ContainerDep, response: Response) -> dict[str, Any]:
        """Ready when the database answers and is at the newest migration."""
        try:
            with c.db.read() as conn:
                conn.execute(text("SELECT 1"))
                numbering = scrape.numbering(c, conn)
            current = current_revision(c.db.engine)
            ledger = scrape.ledger_state(c)
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure instead of raising
            response.status_code = 503
            return {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
        if current != head:
            response.status_code = 503
            return {"status": "unavailable", "migrations": {"current": current, "head": head}}
        # A refused event stays 200: commands keep working, and every instance would be equally "unready" (one
        # forged row would take the whole service down). The alarm is the detail here and the ledger gauges.
        ready: dict[str, Any] = {"status": "ok", "migrations": {"current": current, "head": head}}
        ready["numbering"] = numbering
        ready["ledger"] = ledger
        if c.read_db is not c.db:
            ready["read_replica"] = scrape.replica(c)
        if c.ledger.witnessing.witnesses:
            ready["witnesses"] = scrape.witness_states(c)
        return ready

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"},
            **problems.problem_responses(401, 404),
        },
    )
    def metrics(c: ContainerDep, request: Request) -> Response:
        """Prometheus text format; in production only with `Authorization: Bearer <TAKEDOWN_METRICS_KEY>`."""
        _check_metrics_key(c.settings.metrics_key, production, request.headers.get("authorization"))
        # The gauges this process owns, from the store (the ledger's: right whichever process runs the feeder); the
        # embedded process runs every part, so it reads every part's figures.
        scrape.refresh(c, ["run" if workers else "api"])
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        # FastAPI puts a response's `model` under application/json; problems are declared by reference to
        # application/problem+json instead, so their schemas are added to the components here.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
                webhooks=app.webhooks.routes,  # the webhooks the service sends
                tags=TAGS,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(problems.problem_schemas())
            # The law's threshold is a setting: the registration schemas state it as this process enforces it.
            for name in ("PlatformIn", "PlatformPatch"):
                schemas[name].update(obliged_rule(container.settings.obliged_monthly_users))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _check_metrics_key(key: SecretStr | None, production: bool, authorization: str | None) -> None:
    """Refuse a scrape without the metrics key where one is needed (set, or production: off without one)."""
    status = metrics_refusal(key, production, authorization)
    if status is not None:
        raise problems.Problem(status, *METRICS_REFUSALS[status])


TAGS = [
    {"name": "platforms", "description": "The registry of platforms and their representatives (admin, auditor)"},
    {"name": "orders", "description": "Issue orders (issuer), act on them (platform), read them (every role)"},
    {"name": "deliveries", "description": "Webhook deliveries and their attempt log (admin)"},
    {"name": "sla", "description": "SLA summary and the orders behind it (admin, auditor, issuer for its own)"},
    {"name": "ledger", "description": "Signed checkpoints and RFC 9162 proofs of the event log"},
    {"name": "dashboard", "description": "The dashboard page and its overview (admin, auditor, issuer for its own)"},
    {"name": "transparency", "description": "The public transparency report: aggregates only, small cells suppressed"},
    {"name": "keys", "description": "API keys: make, list, revoke, rotate (admin); a key is shown only when made"},
    {"name": "operations", "description": "Liveness, readiness and metrics"},
]
