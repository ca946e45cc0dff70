"""The bare endpoint `bench/intake.py` compares `takedown api` with: FastAPI, psycopg's async pool, nothing else.

Run by the bench as `uvicorn bench.intake_baseline:app` (one worker) with BENCH_INTAKE_DB naming a database
migrated to our schema. POST /v1/orders parses the same JSON body as the service's and writes, in one transaction
of four INSERTs, the rows the service writes for a new order with an Idempotency-Key: its event, its view row, its
webhook delivery and its idempotency key. The GETs select the rows the service reads: one order's view row by id,
and a page of 50 of the authority's orders, newest first. No authentication, validation or domain logic: the floor
of what the framework, the driver and the disk allow for this work on this machine.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

AUTHORITY = {"id": "mci", "name": "Ministry of Culture and Information"}
POOL_SIZE = 10  # the service's SQLAlchemy pool_size (shared/db.py)

pool = AsyncConnectionPool(
    os.environ.get("BENCH_INTAKE_DB", "dbname=bench_intake_bare host=127.0.0.1 user=postgres"),
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    open=False,
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Open the pool (all its connections) before the first request; close it at shutdown."""
    await pool.open(wait=True)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)

INSERT_EVENT = (
    "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, meta, recorded_at)"
    " VALUES (%s, %s, 1, 'order.issued', 1, %s, %s, %s)"
)
INSERT_ORDER = (
    "INSERT INTO orders (id, issuer_reference, authority_id, platform_id, category, status, issued_at, deadline,"
    " next_due_at, version, request_hash, document)"
    " VALUES (%s, %s, %s, %s, %s, 'issued', %s, NULL, %s, 1, %s, %s)"
)
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, order_id, platform_id, webhook_type, event_id, payload, state, attempts, retry_base,"
    " next_attempt_at, created_at) VALUES (%s, %s, %s, 'order.issued', %s, %s, 'pending', 0, 0, %s, %s)"
)
INSERT_KEY = (
    "INSERT INTO idempotency_keys (authority_id, key, request_hash, order_id, created_at) VALUES (%s, %s, %s, %s, %s)"
)
SELECT_ONE = "SELECT id, document, platform_id, notified_at, status FROM orders WHERE id = %s"
SELECT_PAGE = (
    "SELECT id, document, platform_id, notified_at, status FROM orders WHERE authority_id = %s"
    " ORDER BY id DESC LIMIT %s"
)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


@app.post("/v1/orders")
async def issue(request: Request) -> Response:
    """Parse the order and write its four rows in one transaction."""
    body = json.loads(await request.body())
    order_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    key = request.headers.get("idempotency-key") or order_id
    digest = uuid.uuid5(uuid.NAMESPACE_URL, body["issuer_reference"]).hex
    issued = {**body, "order_id": order_id, "authority": AUTHORITY, "issued_at": now.isoformat()}
    document = {"id": order_id, **{k: v for k, v in issued.items() if k != "order_id"}, "status": "issued"}
    document.update(version=1, sla_status="awaiting_delivery", deadline=None, notified_at=None)
    meta = {"actor": "bench", "role": "issuer"}
    payload = {"type": "order.issued", "timestamp": now.isoformat(), "data": {"order": document}}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(INSERT_EVENT, (str(uuid.uuid4()), order_id, Json(issued), Json(meta), now))
        await conn.execute(
            INSERT_ORDER,
            (
                order_id,
                body["issuer_reference"],
                AUTHORITY["id"],
                body["platform_id"],
                body["category"],
                now,
                now,
                digest,
                Json(document),
            ),
        )
        await conn.execute(
            INSERT_DELIVERY,
            ("msg_" + uuid.uuid4().hex, order_id, body["platform_id"], str(uuid.uuid4()), Json(payload), now, now),
        )
        await conn.execute(INSERT_KEY, (AUTHORITY["id"], key, digest, order_id, now))
    return _json(document, 201)


@app.get("/v1/orders/{order_id}")
async def get_one(order_id: str) -> Response:
    """One order's view row, its document as the body."""
    async with pool.connection() as conn:
        cur = await conn.execute(SELECT_ONE, (order_id,))
        row = await cur.fetchone()
    if row is None:
        return _json({"status": 404}, 404)
    return _json(row[1])


@app.get("/v1/orders")
async def page(limit: int = 50) -> Response:
    """The authority's newest orders: one more row than the page, to know whether another page follows."""
    async with pool.connection() as conn:
        cur = await conn.execute(SELECT_PAGE, (AUTHORITY["id"], limit + 1))
        rows = await cur.fetchall()
    items = [r[1] for r in rows[:limit]]
    return _json({"items": items, "next_cursor": rows[limit - 1][0] if len(rows) > limit else None})


@app.get("/readyz")
async def ready() -> Response:
    """Up once the pool is open."""
    return _json({"status": "ready"})
