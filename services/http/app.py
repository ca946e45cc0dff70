"""The HTTP application: routers of every service, problem+json errors, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from services.bootstrap import Container
from services.http import problems
from services.http.bodylimit import BodyLimitMiddleware
from services.http.dashboard import router as dashboard_router
from services.http.deliveries import router as deliveries_router
from services.http.deps import ContainerDep
from services.http.evidence import router as evidence_router
from services.http.ledger import router as ledger_router
from services.http.orders import router as orders_router
from services.http.platforms import router as platforms_router
from services.http.requestid import RequestIdMiddleware
from services.http.sla import router as sla_router
from services.http.transparency import router as transparency_router
from shared.migrate import current_revision, head_revision


def create_app(container: Container, run_workers: bool | None = None) -> FastAPI:
    """Build the API around a container; `run_workers` starts the in-process sequencer (and notifier)."""
    workers = container.settings.embedded_workers if run_workers is None else run_workers

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(
        title="Takedown orders",
        version="0.1.0",
        summary="Takedown orders to platforms: intake, signed webhooks, SLA and a tamper-evident record.",
        lifespan=lifespan,
    )
    app.state.container = container
    head = head_revision(container.db.engine)  # the code's newest migration: fixed for the process's life
    problems.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=container.settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # added last, so outermost: a 413 carries the request id too
    app.include_router(platforms_router)
    app.include_router(orders_router)
    app.include_router(deliveries_router)
    app.include_router(sla_router)
    app.include_router(ledger_router)
    app.include_router(evidence_router)
    app.include_router(transparency_router)
    app.include_router(dashboard_router)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database reachable, migrations current")
    def readyz(c: ContainerDep, response: Response) -> dict[str, Any]:
        """Ready when the database answers and is at the newest migration."""
        try:
            with c.db.read() as conn:
                conn.execute(text("SELECT 1"))
            current = current_revision(c.db.engine)
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure instead of raising
            response.status_code = 503
            return {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
        if current != head:
            response.status_code = 503
            return {"status": "unavailable", "migrations": {"current": current, "head": head}}
        return {"status": "ok", "migrations": {"current": current, "head": head}}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
