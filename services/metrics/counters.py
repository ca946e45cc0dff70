"""Counters of facts the command side commits (orders issued), fed by handlers wired in `services/bootstrap.py`."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy import Connection

from shared.bus import Published
from shared.db import after_commit

ORDERS_ISSUED = Counter("takedown_orders_issued_total", "Orders issued (counted once their transaction commits)")


def count_issued(conn: Connection, published: Published) -> None:
    """Count an `order.issued` event once its transaction commits (a rolled-back intake is not an order)."""
    # A closure per event: after_commit keeps one copy of an equal hook, and a bulk intake issues several.
    after_commit(conn, lambda: ORDERS_ISSUED.inc())
