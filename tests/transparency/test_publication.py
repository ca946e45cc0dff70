"""Published months on each backend: a finished month is fixed in the ledger once it has settled (not before), once
whatever the number of publishers, served as published even after a late outcome, checked, amended, and proven
against the signed checkpoint."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from sqlalchemy import text, update
from typer.testing import CliRunner

import services.cli as cli_module
from services.bootstrap import bootstrap
from services.cli import cli
from services.transparency.publication import DOCUMENTS, Publisher, month_documents
from shared.events import TransparencyReportPublished
from shared.eventstore import RecordedEvent
from shared.eventstore.tables import events
from shared.settings import WitnessSetting
from shared.tlog.merkle import verify_inclusion
from tests.builders import T0, service_settings
from tests.ledger import offline_verify
from tests.ledger.real_witness import RealWitness
from tests.support import Api, make_api
from tests.transparency.seed import Seeded, project, seed

MARCH = date(2026, 3, 1)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
MADE_TYPE = TransparencyReportPublished.type
SETTLED = APRIL + timedelta(hours=72)  # the default settle time after March ends
GROUPINGS: dict[str, str | None] = {"all": None, "authority": "authority", "category": "category",
                                    "legal_basis": "legal_basis", "platform": "platform"}  # fmt: skip


def go_to(api: Api, at: datetime) -> None:
    api.clock.advance(at - api.clock.now())


def published_events(api: Api) -> list[RecordedEvent]:
    with api.container.db.read() as conn:
        return api.container.store.read_stream(conn, "transparency-2026-03")


def served(api: Api, group_by: str | None, path: str = "/v1/transparency/report") -> Any:
    """The report route's answer for March (JSON, or the CSV's text)."""
    params = {"from": "2026-03-01", "to": "2026-03-31", **({"group_by": group_by} if group_by else {})}
    r = api.call("GET", path, None, params=params)
    assert r.status_code == 200, r.text
    return r.text if path.endswith(".csv") else r.json()


def as_document(answer: dict[str, Any]) -> dict[str, Any]:
    """A served report without what is the answer's own (its time, which months it served as published)."""
    return {k: v for k, v in answer.items() if k not in ("generated_at", "published")}


def late_outcome(api: Api, seeded: Seeded) -> None:
    """Platform A answers one of its March orders in April: March's figures, recomputed, change."""
    oid = seeded.ids["at_risk_a"]
    items = api.call("GET", f"/v1/orders/{oid}", "admin").json()["items"]
    now = api.clock.now().isoformat()
    body = {"outcomes": [{"item_id": i["item_id"], "outcome": "removed", "actioned_at": now} for i in items]}
    assert api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).status_code == 200
    project(api)


@pytest.fixture
def seeded(api: Api) -> Seeded:
    return seed(api)


# ----------------------------------------------------------------------------------------------- publication


def test_a_month_is_published_once_settled_not_before_with_the_documents_the_route_serves(
    api: Api, seeded: Seeded
) -> None:
    go_to(api, SETTLED - timedelta(seconds=1))
    before = {key: as_document(served(api, group)) for key, group in GROUPINGS.items()}
    assert api.container.publisher.run_once() == []
    assert published_events(api) == []
    missing = api.call("GET", "/v1/transparency/publications/2026-03", None)
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-published"
    assert api.call("GET", "/v1/transparency/publications/2026-03/proof", None).status_code == 404

    api.advance(seconds=1)
    [made] = api.container.publisher.run_once()
    assert (made.period, made.revision, made.supersedes, made.reason) == ("2026-03", 1, None, None)
    [event] = published_events(api)
    assert (event.type, event.schema_version, event.version) == ("transparency.report_published", 1, 1)
    data = event.data
    assert set(data["documents"]) == set(DOCUMENTS) == set(GROUPINGS)
    # Each document is the one the report route served for March, and hashed as RFC 8785 (the library, not ours).
    assert data["documents"] == before
    assert data["sha256"] == {k: hashlib.sha256(rfc8785.dumps(d)).hexdigest() for k, d in before.items()}
    assert datetime.fromisoformat(data["generated_at"]) == SETTLED
    assert api.container.publisher.run_once() == []  # nothing else due (April has not ended)
    assert len(published_events(api)) == 1

    r = api.call("GET", "/v1/transparency/publications/2026-03", None)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["revision"], body["stream_id"], body["stream_version"]) == (1, "transparency-2026-03", 1)
    assert body["sha256"] == data["sha256"] and body["documents"] == before
    assert api.call("GET", "/v1/transparency/publications/2026-13", None).status_code == 422


def test_two_publishers_racing_publish_one_revision(api: Api, seeded: Seeded) -> None:
    go_to(api, SETTLED)
    c = api.container
    publishers = [c.publisher, Publisher(c.db, c.store, c.bus, api.clock, settle=timedelta(hours=72), min_cell=5)]
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def publish(publisher: Publisher) -> None:
        try:
            barrier.wait(10)
            results.append(len(publisher.run_once()))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(p,)) for p in publishers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results) == [0, 1]
    assert len(published_events(api)) == 1
    assert c.publisher.publish(MARCH) is None  # published already: silent, no second revision
    assert len(published_events(api)) == 1


def test_the_scheduler_runs_the_publication_job(api: Api, seeded: Seeded) -> None:
    go_to(api, SETTLED)
    scheduler = api.container.scheduler
    assert [(j.name, j.interval_s) for j in scheduler.jobs] == [("transparency-publish", 3600.0)]
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while not published_events(api):
            assert time.monotonic() < deadline, "the scheduler did not publish March"
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert len(published_events(api)) == 1


# ----------------------------------------------------------------------------------------------- served, checked, amended


def test_a_published_month_is_served_as_published_after_a_late_outcome(api: Api, seeded: Seeded) -> None:
    go_to(api, SETTLED)
    [made] = api.container.publisher.run_once()
    csv_before = served(api, None, "/v1/transparency/report.csv")
    api.advance(hours=1)
    late_outcome(api, seeded)
    with api.container.db.read() as conn:
        recomputed = month_documents(conn, MARCH, 5)
    assert recomputed["all"] != made.documents["all"], "the late outcome must change March's figures"
    for key, group in GROUPINGS.items():
        answer = served(api, group)
        assert as_document(answer) == made.documents[key]
        assert answer["published"] == {"2026-03": 1}
    assert served(api, None, "/v1/transparency/report.csv") == csv_before
    # A longer range: March's rows as published, April's (the current month) live.
    r = api.call("GET", "/v1/transparency/report", None, params={"from": "2026-03-01", "to": "2026-04-30"})
    rows = r.json()["rows"]
    assert [row for row in rows if row["period"] == "2026-03"] == made.documents["all"]["rows"]
    assert [row["period"] for row in rows] == ["2026-03", "2026-04"] and rows[1]["provisional"]


@pytest.fixture
def runner(api: Api, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # The command line's own container, on the same database and the test's clock.
    monkeypatch.setattr(cli_module, "_container", lambda: bootstrap(service_settings(db_url), clock=api.clock))
    yield CliRunner()


def test_check_passes_when_equal_fails_naming_what_differs_and_amend_supersedes(
    api: Api, seeded: Seeded, runner: CliRunner
) -> None:
    go_to(api, APRIL + timedelta(days=3))
    refused = runner.invoke(cli, ["transparency", "publish", "--period", "2026-04"])
    assert refused.exit_code == 1 and "has not ended" in refused.output
    assert runner.invoke(cli, ["transparency", "check", "2026-03"]).exit_code == 1  # not published
    # Before its settle time, by hand: a finished month may be published at once.
    done = runner.invoke(cli, ["transparency", "publish", "--period", "2026-03"])
    assert done.exit_code == 0 and "2026-03 revision 1 published" in done.output, done.output
    again = runner.invoke(cli, ["transparency", "publish", "--period", "2026-03"])
    assert again.exit_code == 0 and "published already" in again.output
    ok = runner.invoke(cli, ["transparency", "check", "2026-03"])
    assert ok.exit_code == 0 and "match" in ok.output, ok.output

    late_outcome(api, seeded)
    differs = runner.invoke(cli, ["transparency", "check", "2026-03"])
    assert differs.exit_code == 1, differs.output
    assert "differs from the published report in: " + ", ".join(sorted(DOCUMENTS)) in differs.output
    assert served(api, None)["published"] == {"2026-03": 1}

    assert runner.invoke(cli, ["transparency", "amend", "2026-03"]).exit_code == 2  # --reason is required
    blank = runner.invoke(cli, ["transparency", "amend", "2026-03", "--reason", "  "])
    assert blank.exit_code == 1 and "needs a reason" in blank.output
    amended = runner.invoke(cli, ["transparency", "amend", "2026-03", "--reason", "an answer recorded late"])
    assert amended.exit_code == 0 and "revision 2" in amended.output and "superseding revision 1" in amended.output
    first, second = published_events(api)
    assert (second.version, second.data["revision"], second.data["supersedes"]) == (2, 2, 1)
    assert second.data["reason"] == "an answer recorded late" and first.data["reason"] is None
    assert second.data["documents"]["all"] != first.data["documents"]["all"]
    assert runner.invoke(cli, ["transparency", "check", "2026-03"]).exit_code == 0
    answer = served(api, None)
    assert answer["published"] == {"2026-03": 2} and as_document(answer) == second.data["documents"]["all"]
    assert api.call("GET", "/v1/transparency/publications/2026-03", None).json()["revision"] == 2


def test_check_detects_a_stored_document_that_no_longer_matches_its_hash(api: Api, seeded: Seeded) -> None:
    go_to(api, SETTLED)
    api.container.publisher.run_once()
    assert api.container.publisher.check(MARCH)[1] == []
    [event] = published_events(api)
    documents = {**event.data["documents"]}
    documents["platform"] = {**documents["platform"], "suppressed_cells": 99}
    with api.container.db.transaction() as conn:  # by hand, past the append-only guard, as an intruder would
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
        data = {**event.data, "documents": documents}
        conn.execute(update(events).where(events.c.event_id == event.event_id).values(data=data))
    assert api.container.publisher.check(MARCH)[1] == ["platform"]


# ----------------------------------------------------------------------------------------------- the proof


def test_the_publication_proof_verifies_against_the_signed_checkpoint(api: Api, seeded: Seeded) -> None:
    go_to(api, SETTLED)
    c = api.container
    c.sequencer.catch_up()
    c.ledger.checkpoint()  # the orders' events only
    [made] = c.publisher.run_once()
    c.sequencer.catch_up()
    early = api.call("GET", "/v1/transparency/publications/2026-03/proof", None)
    assert early.status_code == 409 and early.json()["type"] == "/problems/not-in-ledger-yet", early.text
    c.ledger.checkpoint()

    r = api.call("GET", "/v1/transparency/publications/2026-03/proof", None)
    assert r.status_code == 200, r.text
    proof = r.json()
    leaf, inclusion, checkpoint = proof["leaf"], proof["inclusion"], proof["checkpoint"]
    # The checkpoint is signed by the ledger's key (an independent verifier: tests/ledger/offline_verify.py).
    key = api.call("GET", "/v1/ledger/public-key", None).json()["verifier_key"]
    _origin, size, root = offline_verify.signed_text(checkpoint["note"], key, "checkpoint").split("\n")[:3]
    assert (
        (int(size), root)
        == (checkpoint["tree_size"], checkpoint["root_hash"])
        == (
            inclusion["tree_size"],
            inclusion["root_hash"],
        )
    )
    # The leaf is the publication's event; its RFC 8785 bytes hash to the proven leaf, which leads to the root.
    leaf_hash = hashlib.sha256(b"\x00" + rfc8785.dumps(leaf)).digest()
    assert base64.b64encode(leaf_hash).decode() == inclusion["leaf_hash"]
    [event] = published_events(api)  # numbered now (PostgreSQL numbers after the commit)
    assert event.position is not None and inclusion["position"] == event.position
    assert inclusion["leaf_index"] == event.position - 1
    path = [base64.b64decode(h) for h in inclusion["proof"]]
    verify_inclusion(inclusion["leaf_index"], int(size), leaf_hash, path, base64.b64decode(root))
    assert (leaf["stream_id"], leaf["type"], leaf["version"]) == ("transparency-2026-03", MADE_TYPE, 1)
    assert (
        leaf["data"]["sha256"]
        == made.sha256
        == api.call("GET", "/v1/transparency/publications/2026-03", None).json()["sha256"]
    )
    # A figure changed after publication would not be this leaf: the proof fails for it.
    forged = {**leaf, "data": {**leaf["data"], "sha256": {**leaf["data"]["sha256"], "all": "0" * 64}}}
    with pytest.raises(ValueError):
        verify_inclusion(
            inclusion["leaf_index"],
            int(size),
            hashlib.sha256(b"\x00" + rfc8785.dumps(forged)).digest(),
            path,
            base64.b64decode(root),
        )


# ----------------------------------------------------------------------------------------------- readiness


def test_readiness_lists_the_witnesses_and_stays_ready_with_one_down(db_url: str) -> None:
    up = RealWitness("witness.test/up", int(T0.timestamp()))
    gone = RealWitness("witness.test/gone", int(T0.timestamp()))
    gone.down()  # nobody listens on its port any more
    try:
        configured = [WitnessSetting(name=w.name, vkey=w.vkey, url=w.url) for w in (up, gone)]
        with make_api(db_url, ledger_witnesses=configured, ledger_witness_timeout_s=2.0) as api:
            up.trust(api.container.ledger.origin, api.container.ledger.verifier)
            assert api.issue().status_code == 201
            api.container.sequencer.catch_up()
            size = api.container.ledger.checkpoint().tree_size
            api.container.ledger.witnessing.run_once()
            api.advance(seconds=30)
            r = api.call("GET", "/readyz", None)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "ok"
            found = {w["name"]: w for w in r.json()["witnesses"]}
            assert set(found) == {up.name, gone.name}
            assert found[up.name] == {
                "name": up.name,
                "url": up.url,
                "cosigned_size": size,
                "cosignature_age_seconds": 30.0,
                "failures": 0,
                "last_error": None,
                "retry_at": None,
            }
            down = found[gone.name]
            assert (down["cosigned_size"], down["cosignature_age_seconds"], down["failures"]) == (0, None, 1)
            assert "unreachable" in down["last_error"] and down["retry_at"] is not None and down["url"] == gone.url
    finally:
        up.down()
