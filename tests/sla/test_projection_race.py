"""Two writers of one SLA row (the sweep moving it by time, the projection applying an event) wait for each other."""

from __future__ import annotations

import threading
import time

import pytest

from services.sla.tables import sla_orders
from tests.conftest import drop_pg, fresh_pg_url
from tests.support import make_api

from .test_projection import counts_by_group_by, project, stored_counts, table

pytestmark = pytest.mark.postgres


def test_a_writer_blocked_on_a_row_sees_the_committed_row_and_counts_it_once(pg_template: str) -> None:
    url = fresh_pg_url(pg_template)
    try:
        with make_api(url) as api:
            oid = api.issue().json()["id"]
            project(api)
            (row,) = table(api, sla_orders)
            projection, engine = api.container.sla, api.container.db.engine
            with engine.connect() as first:
                with first.begin():
                    projection.replace(first, {oid: {**row, "status": "at_risk"}})  # holds the row until commit
                    errors: list[BaseException] = []

                    def second() -> None:
                        try:
                            with engine.begin() as conn:
                                projection.replace(conn, {oid: {**row, "status": "breached"}})
                        except BaseException as exc:  # noqa: BLE001 - asserted below
                            errors.append(exc)

                    waiting = threading.Thread(target=second)
                    waiting.start()
                    time.sleep(0.5)
                    assert waiting.is_alive(), "the second writer did not wait for the row"
                waiting.join(10)
            assert not errors, errors  # it was a duplicate key when the first writer deleted and re-inserted
            assert [r["status"] for r in table(api, sla_orders)] == ["breached"]
            assert stored_counts(api) == counts_by_group_by(api)
    finally:
        drop_pg(url)
