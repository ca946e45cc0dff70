"""Witnesses cosign the ledger's checkpoints (C2SP tlog-witness) and verifiers require a quorum of them.

Two or three spec-following witnesses run on 127.0.0.1 (tests/ledger/witness_double.py); the ledger submits each
checkpoint to them, stores their cosignatures and serves them; one witness down or failing stops nothing.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from services.cli import cli
from services.ledger import bundle as bundles
from services.ledger.service import Ledger
from services.ledger.witnessing import (
    COSIGNATURE_AGE,
    Conflict,
    Cosigned,
    Failed,
    Witness,
    backoff_s,
    parse_response,
    request_body,
    witness,
)
from services.metrics.scrape import refresh
from shared.clock import FrozenClock
from shared.db import Database, make_engine
from shared.settings import Settings, WitnessSetting
from shared.tlog.cosignature import cosignatures
from shared.tlog.note import CheckpointBody, NoteSigner, parse_verifier_key, sign_checkpoint
from shared.tlog.policy import PolicyError, WitnessPolicy, parse_policy
from tests.conftest import fresh_sqlite_url
from tests.support import Api, make_api

from . import offline_verify
from .conftest import ORIGIN, SEED, T0, append_events, signed_store
from .real_witness import RealWitness
from .witness_double import WitnessDouble

WITNESSED_AT = int(T0.timestamp())


@pytest.fixture
def doubles(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Three witnesses on 127.0.0.1 whose cosignatures state the time T0: test doubles, or (parametrized "real")
    the repository's own `services/witness/` served by uvicorn."""
    if getattr(request, "param", "double") == "real":
        made: list[Any] = [RealWitness(f"witness.test/{n}", WITNESSED_AT) for n in "abc"]
    else:
        made = [WitnessDouble(f"witness.test/{n}", now=lambda: WITNESSED_AT) for n in "abc"]
    yield made
    for w in made:
        w.down()


def configured(ws: list[WitnessDouble]) -> list[Witness]:
    return [witness(w.name, w.vkey, w.url) for w in ws]


def pinned(ws: list[WitnessDouble], quorum: int | None = None) -> WitnessPolicy:
    return parse_policy([f"{w.name}={w.vkey}" for w in ws], quorum)


def witnessed_ledger(db: Database, ws: list[WitnessDouble], clock: FrozenClock | None = None) -> Ledger:
    ledger = Ledger(
        db,
        signed_store(db),
        clock or FrozenClock(T0),
        origin=ORIGIN,
        seed=lambda: SEED,
        stream_visible=lambda principal, stream_id: False,
        witnesses=configured(ws),
        witness_timeout_s=2.0,
    )
    for w in ws:
        w.trust(ledger.origin, ledger.verifier)
    return ledger


# ----------------------------------------------------------------------------------------------- the protocol, pure

LOG = NoteSigner(ORIGIN, SEED)
NOTE = sign_checkpoint(CheckpointBody(ORIGIN, 5, bytes(32)), LOG)
W = WitnessDouble("witness.test/pure")
W.down()
PURE = witness(W.name, W.vkey, "http://127.0.0.1:1")


def test_the_request_body_is_old_size_proof_lines_blank_line_checkpoint() -> None:
    body = request_body(3, [b"\x01" * 32, b"\x02" * 32], NOTE).decode()
    assert (
        body
        == "old 3\n"
        + "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
        + "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\n"
        + NOTE
    )
    assert request_body(0, [], NOTE).decode() == "old 0\n\n" + NOTE
    with pytest.raises(ValueError):
        request_body(0, [b"\x01" * 32], NOTE)  # no proof from the empty tree


def test_answers_are_read_as_the_spec_says() -> None:
    line = W.cosigner.cosign(NOTE[: NOTE.index("\n\n") + 1], 1234)
    assert parse_response(PURE, NOTE, 200, "text/plain", line.encode()) == Cosigned(line, 1234)
    # Another key's line first is ignored; ours after it counts.
    other = WitnessDouble("witness.test/other")
    other.down()
    foreign = other.cosigner.cosign(NOTE[: NOTE.index("\n\n") + 1], 1)
    assert parse_response(PURE, NOTE, 200, "text/plain", (foreign + line).encode()) == Cosigned(line, 1234)
    assert isinstance(parse_response(PURE, NOTE, 200, "text/plain", foreign.encode()), Failed)
    assert parse_response(PURE, NOTE, 409, "text/x.tlog.size", b"17\n") == Conflict(17)
    assert parse_response(PURE, NOTE, 409, "text/x.tlog.size; charset=utf-8", b"0\n") == Conflict(0)
    for malformed in (b"17", b"017\n", b"x\n"):
        assert isinstance(parse_response(PURE, NOTE, 409, "text/x.tlog.size", malformed), Failed)
    assert isinstance(parse_response(PURE, NOTE, 409, "text/plain", b"17\n"), Failed)  # not a size answer
    assert isinstance(parse_response(PURE, NOTE, 500, "text/plain", b"boom"), Failed)
    # A line for another checkpoint does not verify over this one.
    stale = W.cosigner.cosign(sign_checkpoint(CheckpointBody(ORIGIN, 4, bytes(32)), LOG).split("\n\n")[0] + "\n", 1)
    assert isinstance(parse_response(PURE, NOTE, 200, "text/plain", stale.encode()), Failed)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 30.0) for n in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_s(10_000, 300.0) == 300.0


def test_a_verifier_policy_from_the_command_line() -> None:
    a, b = WitnessDouble("witness.test/pa"), WitnessDouble("witness.test/pb")
    a.down()
    b.down()
    given = [f"{a.name}={a.vkey}", f"{b.name}={b.vkey}"]
    assert parse_policy(given, None).quorum == 2  # all given by default
    assert parse_policy([], None) == WitnessPolicy((), 0)
    assert parse_policy(given, 1).quorum == 1
    for bad, quorum in (([f"{a.name}={b.vkey}"], None), (["no-equals-sign"], None), (given, 3), (given, -1)):
        with pytest.raises(PolicyError):
            parse_policy(bad, quorum)


def test_the_witnesses_setting_is_validated() -> None:
    w = WitnessDouble("witness.test/s")
    w.down()
    good = {"name": w.name, "vkey": w.vkey, "url": "https://witness.example/w"}
    assert Settings(ledger_witnesses=[good]).ledger_witnesses[0].name == w.name
    for bad in ({**good, "name": "witness.test/other"}, {**good, "url": "ftp://x/y"}, {**good, "vkey": "x+y+z"}):
        with pytest.raises(ValueError):
            Settings(ledger_witnesses=[bad])
    with pytest.raises(ValueError):
        Settings(ledger_witnesses=[good, good])


def test_the_witnesses_setting_is_read_from_its_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    w = WitnessDouble("witness.test/env")
    w.down()
    monkeypatch.setenv("TAKEDOWN_LEDGER_WITNESSES", json.dumps([{"name": w.name, "vkey": w.vkey, "url": w.url}]))
    assert Settings().ledger_witnesses == [WitnessSetting(name=w.name, vkey=w.vkey, url=w.url)]


# ----------------------------------------------------------------------------------------------- the ledger submits


def test_each_checkpoint_is_cosigned_and_the_old_size_is_the_last_cosigned(
    db: Database, doubles: list[WitnessDouble]
) -> None:
    ws = doubles[:2]
    ledger = witnessed_ledger(db, ws)
    append_events(db, 3)
    first = ledger.checkpoint()
    assert all(isinstance(o, Cosigned) for o in ledger.witnessing.run_once().values())
    append_events(db, 4, start=3)
    second = ledger.checkpoint()
    ledger.witnessing.run_once()
    for w in ws:
        assert w.requests == [(0, 3), (3, 7)]  # the second carried a consistency proof from 3, which it checked
        assert (w.size, w.root) == (7, second.root)
    note = ledger.cosigned_checkpoint().note
    assert set(cosignatures(note, [w.cosigner.verifier for w in ws])) == {w.name for w in ws}
    assert ledger.cosigned_checkpoint(first).note != first.note  # the first one's stored cosignatures too
    assert ledger.witnessing.run_once() == {w.name: None for w in ws}  # nothing left to ask


def test_a_witness_ahead_of_what_we_remember_is_caught_up_from_its_409(
    db: Database, doubles: list[WitnessDouble]
) -> None:
    w = doubles[0]
    ledger = witnessed_ledger(db, [w])
    append_events(db, 3)
    three = ledger.checkpoint()
    w.size, w.root = 3, three.root  # it cosigned size 3 for us before (say, a restored database forgot it)
    append_events(db, 2, start=3)
    ledger.checkpoint()
    assert isinstance(ledger.witnessing.run_once()[w.name], Cosigned)
    assert w.requests == [(0, 5), (3, 5)]  # 409 "3", then again from 3
    assert w.size == 5


def test_an_inconsistent_tree_is_not_cosigned(db: Database, doubles: list[WitnessDouble]) -> None:
    w = doubles[0]
    ledger = witnessed_ledger(db, [w])
    append_events(db, 3)
    ledger.checkpoint()
    w.size, w.root = 2, bytes(32)  # it holds another tree of size 2: our proof from 2 cannot lead to its root
    outcome = ledger.witnessing.run_once()[w.name]
    assert isinstance(outcome, Failed) and "422" in outcome.reason
    assert ledger.cosigned_checkpoint().note == ledger.latest_checkpoint().note


def test_a_witness_down_stops_nothing_and_waits_out_its_backoff(db: Database, doubles: list[WitnessDouble]) -> None:
    up, down = doubles[0], doubles[1]
    clock = FrozenClock(T0)
    ledger = witnessed_ledger(db, [up, down], clock)
    down.down()
    append_events(db, 2)
    ledger.checkpoint()
    outcomes = ledger.witnessing.run_once()
    assert isinstance(outcomes[up.name], Cosigned)
    assert isinstance(outcomes[down.name], Failed) and "unreachable" in outcomes[down.name].reason  # type: ignore[union-attr]
    assert ledger.witnessing.run_once()[down.name] is None  # within its 1 s backoff: not asked again
    append_events(db, 2, start=2)
    assert ledger.checkpoint().tree_size == 4  # the checkpoints go on
    down.fail_with = 500
    down.up()
    second = ledger.witnessing.run_once()[down.name]  # a new checkpoint: asked at once
    assert isinstance(second, Failed) and "500" in second.reason
    clock.advance(timedelta(seconds=1))
    assert ledger.witnessing.run_once()[down.name] is None  # 2 s after its second failure in a row
    down.fail_with = None
    clock.advance(timedelta(seconds=1))
    assert isinstance(ledger.witnessing.run_once()[down.name], Cosigned)  # and it catches up from 0 to 4
    assert down.requests[-1] == (0, 4)
    status = {s.name: s for s in ledger.witnessing.status()}
    assert status[down.name].cosigned_size == 4 and status[down.name].state.failures == 0


def test_a_witness_in_the_background_never_holds_up_a_checkpoint(db: Database, doubles: list[WitnessDouble]) -> None:
    ledger = witnessed_ledger(db, doubles[:1])
    doubles[0].down()
    ledger.start()
    try:
        append_events(db, 2)
        assert ledger.checkpoint().tree_size == 2  # while the witnessing thread fails on its own
    finally:
        ledger.stop()


# ----------------------------------------------------------------------------------------------- served, verified


@pytest.fixture
def witnessed_api(db_url: str, doubles: list[WitnessDouble]) -> Iterator[Api]:
    settings = [WitnessSetting(name=w.name, vkey=w.vkey, url=w.url) for w in doubles]
    with make_api(db_url, ledger_witnesses=settings) as api:
        for w in doubles:
            w.trust(api.container.ledger.origin, api.container.ledger.verifier)
        yield api


def _checkpoint_now(api: Api) -> None:
    api.container.sequencer.catch_up()
    api.container.ledger.checkpoint()
    api.container.ledger.witnessing.run_once()


def _bundle(api: Api, order_id: str) -> dict[str, Any]:
    api.container.sequencer.catch_up()
    r = api.call("GET", f"/v1/orders/{order_id}/evidence", "auditor")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _first_key(api: Api) -> str:
    return str(api.call("GET", "/v1/ledger/public-key", None).json()["key_chain"][0]["verifier_key"])


@pytest.mark.parametrize("doubles", ["double", "real"], indirect=True)
def test_cosignatures_are_served_with_the_checkpoint_and_the_metrics(
    witnessed_api: Api, doubles: list[WitnessDouble]
) -> None:
    api = witnessed_api
    doubles[2].down()
    _checkpoint_now(api)
    served = api.call("GET", "/v1/ledger/checkpoint", None).json()
    found = cosignatures(served["note"], [w.cosigner.verifier for w in doubles])
    assert found == {doubles[0].name: WITNESSED_AT, doubles[1].name: WITNESSED_AT}
    assert served["note"].startswith(api.container.ledger.latest_checkpoint().note)
    api.advance(seconds=120)
    refresh(api.container, ["ledger feeder"])  # what the feeder's /metrics reads at a scrape
    metrics = generate_latest().decode()
    size = served["tree_size"]
    assert f'takedown_ledger_witness_cosigned_size{{witness="{doubles[0].name}"}} {float(size)}' in metrics
    assert f'takedown_ledger_witness_cosignature_age_seconds{{witness="{doubles[0].name}"}} 120.0' in metrics
    assert f'takedown_ledger_witness_cosigned_size{{witness="{doubles[2].name}"}} 0.0' in metrics
    assert math.isnan(COSIGNATURE_AGE.labels(witness=doubles[2].name)._value.get())  # never cosigned


@pytest.mark.parametrize("doubles", ["double", "real"], indirect=True)
def test_quorum_two_of_two_and_two_of_three_with_one_down_pass(
    witnessed_api: Api, doubles: list[WitnessDouble], tmp_path: Path
) -> None:
    api = witnessed_api
    doubles[2].down()
    order_id = str(api.issue().json()["id"])
    _checkpoint_now(api)
    doc = _bundle(api, order_id)
    raw = json.dumps(doc)
    key = _first_key(api)
    two_of_two, two_of_three = pinned(doubles[:2]), pinned(doubles, 2)
    for policy in (two_of_two, two_of_three):
        report = bundles.verify_bundle(raw, key, witnesses=policy)
        assert report.ok, report.problems
        assert report.cosigned_by == [doubles[0].name, doubles[1].name]
        assert api.container.ledger.verify(None, policy).ok
    offline_verify.verify(doc, key)  # the README's snippet still checks the events (it ignores cosignatures)
    path = tmp_path / "bundle.json"
    path.write_text(raw)
    flags = [arg for w in doubles for arg in ("--witness", f"{w.name}={w.vkey}")]
    result = CliRunner().invoke(cli, ["ledger", "verify-bundle", str(path), "--key", key, *flags, "--quorum", "2"])
    assert result.exit_code == 0, result.output
    assert f"cosigned by {doubles[0].name}, {doubles[1].name} (quorum 2)" in result.output


@pytest.mark.parametrize("doubles", ["double", "real"], indirect=True)
def test_a_checkpoint_cosigned_by_one_of_two_required_fails(
    witnessed_api: Api, doubles: list[WitnessDouble], tmp_path: Path
) -> None:
    api = witnessed_api
    doubles[1].down()
    order_id = str(api.issue().json()["id"])
    _checkpoint_now(api)
    raw = json.dumps(_bundle(api, order_id))
    key = _first_key(api)
    policy = pinned(doubles[:2])
    report = bundles.verify_bundle(raw, key, witnesses=policy)
    assert not report.ok
    assert any(
        re.search(r"1 valid cosignatures of the 2 required .* valid: witness\.test/a", p) for p in report.problems
    )
    assert bundles.verify_bundle(raw, key, witnesses=pinned(doubles[:2], 1)).ok  # a quorum of one is met
    verified = api.container.ledger.verify(None, policy)
    assert not verified.ok
    assert any("(the newest): 1 valid cosignatures of the 2 required" in p for p in verified.problems)
    path = tmp_path / "bundle.json"
    path.write_text(raw)
    flags = [arg for w in doubles[:2] for arg in ("--witness", f"{w.name}={w.vkey}")]
    result = CliRunner().invoke(cli, ["ledger", "verify-bundle", str(path), "--key", key, *flags])
    assert result.exit_code == 1
    assert "1 valid cosignatures of the 2 required" in result.output


def test_a_forged_cosignature_does_not_count(witnessed_api: Api, doubles: list[WitnessDouble]) -> None:
    api = witnessed_api
    order_id = str(api.issue().json()["id"])
    _checkpoint_now(api)
    doc = _bundle(api, order_id)
    note = doc["checkpoint"]["cosigned_note"]
    line = next(x for x in note.splitlines() if x.startswith(f"— {doubles[0].name} "))
    dash, name, encoded = line.split(" ")
    blob = bytearray(base64.b64decode(encoded))
    blob[-1] ^= 1
    forged = f"{dash} {name} {base64.b64encode(blob).decode()}"
    doc["checkpoint"]["cosigned_note"] = note.replace(line, forged)
    report = bundles.verify_bundle(json.dumps(doc), _first_key(api), witnesses=pinned(doubles))
    assert any("2 valid cosignatures of the 3 required" in p for p in report.problems), report.problems


# ----------------------------------------------------------------------------------------------- backdating


def test_an_event_recorded_before_an_earlier_checkpoint_was_cosigned_is_flagged(
    db: Database, doubles: list[WitnessDouble]
) -> None:
    ws = doubles[:2]
    for w in ws:
        w.now = lambda: WITNESSED_AT + 3600  # the witnesses saw size 3 an hour after T0
    ledger = witnessed_ledger(db, ws)
    append_events(db, 3)
    ledger.checkpoint()
    ledger.witnessing.run_once()
    append_events(db, 2, start=3)  # recorded at T0+3 s and T0+4 s: an hour before the witnesses saw size 3
    ledger.checkpoint()
    ledger.witnessing.run_once()
    report = ledger.verify(None, pinned(ws))
    assert not report.ok
    assert [(b.position, b.reason) for b in report.bad_positions] == [(4, "backdated"), (5, "backdated")]
    assert "the checkpoint of tree size 3 that does not hold it was cosigned at" in report.bad_positions[0].detail
    assert ledger.verify().ok  # without witnesses pinned, only the stored times are there to judge by


def test_the_bundle_verifier_flags_an_order_recorded_before_an_earlier_cosigned_checkpoint(
    witnessed_api: Api, doubles: list[WitnessDouble]
) -> None:
    api = witnessed_api
    for w in doubles:
        w.now = lambda: WITNESSED_AT + 3600
    _checkpoint_now(api)  # the platforms' registrations, cosigned an hour after T0
    size = api.container.ledger.latest_checkpoint().tree_size
    assert size > 0
    order_id = str(api.issue().json()["id"])  # recorded at T0: an hour before the witnesses saw `size`
    _checkpoint_now(api)
    doc = _bundle(api, order_id)
    assert len(doc["earlier_checkpoints"]) == 1
    key = _first_key(api)
    report = bundles.verify_bundle(json.dumps(doc), key, witnesses=pinned(doubles))
    assert any(
        re.search(rf"event \S+ at position {size + 1} is backdated: .* tree size {size} .* cosigned at", p)
        for p in report.problems
    ), report.problems
    assert bundles.verify_bundle(json.dumps(doc), key, witnesses=pinned(doubles), max_lag_s=7200).ok
    assert bundles.verify_bundle(json.dumps(doc), key).ok  # without witnesses: nothing bounds the times


def test_the_commands_submit_and_verify_with_a_quorum(
    db_url: str, db: Database, doubles: list[WitnessDouble], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`takedown ledger checkpoint` asks TAKEDOWN_LEDGER_WITNESSES; `verify --witness … --quorum K` counts them."""
    a, b, c = doubles
    c.down()
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    monkeypatch.setenv(
        "TAKEDOWN_LEDGER_WITNESSES", json.dumps([{"name": w.name, "vkey": w.vkey, "url": w.url} for w in doubles])
    )
    runner = CliRunner()
    key = runner.invoke(cli, ["ledger", "public-key"]).output.splitlines()[0]
    origin = runner.invoke(cli, ["ledger", "identity"]).output.splitlines()[0].removeprefix("origin ")
    for w in doubles:
        w.trust(origin, parse_verifier_key(key))
    append_events(db, 3)
    made = runner.invoke(cli, ["ledger", "checkpoint"])
    assert made.exit_code == 0, made.output
    assert set(cosignatures(made.stdout, [w.cosigner.verifier for w in doubles])) == {a.name, b.name}
    assert f"witness {c.name} did not cosign" in made.stderr

    def verify(*ws: WitnessDouble, quorum: int | None = None) -> Any:
        flags = [arg for w in ws for arg in ("--witness", f"{w.name}={w.vkey}")]
        return runner.invoke(cli, ["ledger", "verify", *flags, *(["--quorum", str(quorum)] if quorum else [])])

    ok = verify(a, b)
    assert ok.exit_code == 0 and "witnessed: up to tree size 3 (quorum 2)" in ok.output, ok.output
    assert verify(a, b, c, quorum=2).exit_code == 0
    refused = verify(a, c)
    assert refused.exit_code == 1
    assert "checkpoint at tree size 3 (the newest): 1 valid cosignatures of the 2 required" in refused.output
    assert runner.invoke(cli, ["ledger", "verify", "--witness", f"{a.name}={b.vkey}"]).exit_code == 2


def test_a_forked_log_is_refused_by_both_real_witnesses_and_the_evidence_is_served(
    tmp_path: Path, sqlite_template: Path
) -> None:
    witnesses = [RealWitness(f"witness.test/{n}", WITNESSED_AT) for n in "ab"]
    try:
        for d in "hf":
            (tmp_path / d).mkdir()
        honest_db, forked_db = (Database(make_engine(fresh_sqlite_url(sqlite_template, tmp_path / d))) for d in "hf")
        honest = witnessed_ledger(honest_db, witnesses)
        append_events(honest_db, 3)
        honest.checkpoint()
        assert all(isinstance(o, Cosigned) for o in honest.witnessing.run_once().values())
        # The same origin and key, another history: what a log showing two views would have to submit.
        forked = witnessed_ledger(forked_db, witnesses)
        append_events(forked_db, 5)
        forked.checkpoint()
        outcomes = forked.witnessing.run_once()
        assert all(isinstance(o, Failed) and "422" in o.reason for o in outcomes.values()), outcomes
        assert forked.cosigned_checkpoint().note == forked.latest_checkpoint().note  # no cosignature gathered
        for w in witnesses:
            refusals = httpx.get(f"{w.url}/refusals", timeout=5).json()
            evidence = [r for r in refusals["items"] if r["status"] == 422]
            assert evidence, refusals
            # Two notes signed by the one log key that no consistency proof joins: proof of the fork, for anyone.
            assert evidence[0]["checkpoint"] == forked.latest_checkpoint().note
            assert evidence[0]["latest_checkpoint"].startswith(honest.latest_checkpoint().note)
    finally:
        for w in witnesses:
            w.down()
