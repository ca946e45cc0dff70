"""The witness over HTTP, a real uvicorn on 127.0.0.1: the protocol's answers byte for byte, its key, its refusals."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import httpx
import pytest

from services.http.witness import MAX_BODY_BYTES, create_witness_app
from services.witness.service import Witness
from shared.tlog.note import NoteSigner
from tests.support import serve
from tests.witness.conftest import ORIGIN, Log, make_witness, seed
from tests.witness.spec_verifier import checkpoint_body, verify_response


@pytest.fixture
def client(witness: Witness) -> Iterator[httpx.Client]:
    """A client of the witness's app served on 127.0.0.1."""
    with serve(create_witness_app(witness)) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield http


def add(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/add-checkpoint", content=body, headers={"Content-Type": "text/plain"})


def test_a_checkpoint_is_cosigned_in_plain_text(client: httpx.Client, log: Log) -> None:
    vkey = client.get("/vkey")
    assert vkey.status_code == 200 and vkey.text.endswith("\n")
    answer = add(client, log.submission(0, 5))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text.startswith("\u2014 witness.example.net/w1 ") and answer.text.count("\n") == 1
    verify_response(answer.text, checkpoint_body(log.checkpoint(5)), vkey.text.strip())


def test_a_witness_behind_the_log_answers_409_with_its_size_and_the_log_catches_up(
    client: httpx.Client, log: Log
) -> None:
    assert add(client, log.submission(0, 8)).status_code == 200
    # The log restarted from an older state of what it sent: it believes the witness is at 4.
    behind = add(client, log.submission(4, 12))
    assert behind.status_code == 409
    assert behind.headers["content-type"] == "text/x.tlog.size"
    assert behind.content == b"8\n"
    # It resends from the size the witness named, with the proof from there.
    caught_up = add(client, log.submission(int(behind.text), 12))
    assert caught_up.status_code == 200
    verify_response(caught_up.text, checkpoint_body(log.checkpoint(12)), client.get("/vkey").text.strip())
    # A client that knows nothing asks with old size 0 to learn the size.
    assert add(client, log.submission(0, 13)).content == b"12\n"


def test_a_fork_is_refused_and_published_with_both_checkpoints(client: httpx.Client, log: Log) -> None:
    assert add(client, log.submission(0, 8)).status_code == 200
    fork = Log(log.signer, salt=b"fork")  # the same log key signing another tree
    same_size = add(client, fork.submission(8, 8))
    assert same_size.status_code == 409 and same_size.headers["content-type"].startswith("text/plain")
    # A larger forked tree with a proof from its own size-8 tree does not lead to the cosigned root.
    larger = add(client, fork.submission(8, 20))
    assert larger.status_code == 422 and larger.headers["content-type"].startswith("text/plain")
    page = client.get("/refusals")
    assert page.status_code == 200 and page.headers["content-type"] == "application/json"
    items = page.json()["items"]
    assert [(i["status"], i["code"]) for i in items] == [(409, "root-mismatch"), (422, "bad-consistency-proof")]
    for item in items:
        assert item["origin"] == ORIGIN and item["latest_checkpoint"] == log.checkpoint(8)
    assert items[0]["checkpoint"] == fork.checkpoint(8) and items[0]["proof"] == []
    assert items[1]["checkpoint"] == fork.checkpoint(20)
    assert items[1]["proof"] == [base64.b64encode(h).decode() for h in fork.proof(8, 20)]
    assert page.json()["next_after"] is None
    assert client.get("/refusals", params={"origin": "other.example/log"}).json()["items"] == []


@pytest.mark.parametrize(
    ("make_body", "status"),
    [
        (lambda log: log.submission(0, 3).replace(b"old 0", b"old 00"), 400),
        (lambda log: log.submission(0, 3).replace(b"old 0\n", b"old 9\n"), 400),  # old size beyond the checkpoint
        (lambda log: Log(NoteSigner("other.example/log", seed("o")), origin="other.example/log").submission(0, 3), 404),
        (lambda log: Log(NoteSigner(ORIGIN, seed("impostor"))).submission(0, 3), 403),
    ],
    ids=["malformed", "old-beyond", "unknown-origin", "untrusted-key"],
)
def test_refusals_have_the_spec_status_in_plain_text(
    client: httpx.Client, log: Log, make_body: Callable[[Log], bytes], status: int
) -> None:
    answer = add(client, make_body(log))
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/plain") and answer.text.endswith("\n")


def test_what_is_not_a_protocol_answer_is_a_problem(client: httpx.Client, log: Log) -> None:
    too_large = add(client, b"old 0\n" + b"A" * MAX_BODY_BYTES)
    assert too_large.status_code == 413
    assert too_large.headers["content-type"] == "application/problem+json"
    bad_query = client.get("/refusals", params={"limit": 0})
    assert bad_query.status_code == 422 and bad_query.json()["type"] == "/problems/validation"
    wrong_method = client.get("/add-checkpoint")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert client.get("/nowhere").headers["content-type"] == "application/problem+json"


def test_the_openapi_document_declares_every_answer(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    ops = {(m, p): op for p, item in document["paths"].items() for m, op in item.items()}
    assert {key: op["operationId"] for key, op in ops.items()} == {
        ("post", "/add-checkpoint"): "add_checkpoint",
        ("get", "/vkey"): "vkey",
        ("get", "/refusals"): "refusals",
    }
    answers = ops[("post", "/add-checkpoint")]["responses"]
    assert {"200", "400", "403", "404", "409", "413", "422"} <= set(answers)
    assert set(answers["409"]["content"]) == {"text/x.tlog.size", "text/plain"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for (method, path), op in ops.items():
        assert op["tags"] == ["witness"]
        for status, response in op["responses"].items():
            protocol = path == "/add-checkpoint" and status in {"200", "400", "403", "404", "409", "422"}
            if not protocol and not status.startswith("2"):
                assert response["content"] == problem, (method, path, status)


def test_two_witness_processes_share_one_latest(witness_db_url: str, log: Log, witness: Witness) -> None:
    # A second process on the same database (its own engine) sees what the first cosigned.
    other = make_witness(witness_db_url, log.signer, witness.cosigner, witness.clock)
    try:
        with serve(create_witness_app(witness)) as a, serve(create_witness_app(other)) as b:
            assert httpx.post(f"{a}/add-checkpoint", content=log.submission(0, 8)).status_code == 200
            assert httpx.post(f"{b}/add-checkpoint", content=log.submission(0, 9)).content == b"8\n"
            assert httpx.post(f"{b}/add-checkpoint", content=log.submission(8, 9)).status_code == 200
    finally:
        other.db.engine.dispose()
