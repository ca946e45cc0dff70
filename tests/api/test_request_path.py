"""The statements one request costs on the hot routes: a cached key reads nothing, a new order reads no stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.builders import order_body
from tests.support import Api


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block, first words only (BEGIN/COMMIT aside)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        words = sql.split()
        if words[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            seen.append(" ".join(words[:3]))

    engine = api.container.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_new_order_costs_one_lookup_and_four_inserts(api: Api) -> None:
    assert api.issue(issuer_reference="R-warm").status_code == 201  # the key is checked, and now cached
    with statements(api) as seen:
        body = order_body(api.platform_a, issuer_reference="R-path")
        r = api.call("POST", "/v1/orders", "issuer", json=body, headers={"Idempotency-Key": "k-path"})
    assert r.status_code == 201, r.text
    # The platform's existence, then the event, the view row, the webhook and the key: no read of the (new)
    # order's stream, no read of the key table, no read before the write for idempotency.
    # (SQLite numbers the events inline: its last position, then theirs.)
    numbering = ["SELECT coalesce(max(event_positions.position), ?)", "INSERT INTO event_positions"]
    inline = numbering if api.container.db.dialect == "sqlite" else []
    expected = ["SELECT platforms.id FROM", "INSERT INTO events", *inline, "INSERT INTO orders"]
    expected += ["INSERT INTO deliveries", "INSERT INTO idempotency_keys"]
    assert seen == expected


def test_reads_cost_one_statement_once_the_key_is_cached(api: Api) -> None:
    order_id = api.issue().json()["id"]
    assert api.call("GET", "/v1/orders", "issuer").status_code == 200
    with statements(api) as one:
        assert api.call("GET", f"/v1/orders/{order_id}", "issuer").status_code == 200
    with statements(api) as page:
        assert api.call("GET", "/v1/orders?limit=50", "issuer").status_code == 200
    assert len(one) == 1 and len(page) == 1, (one, page)
