"""The witness over its own store, on SQLite and PostgreSQL: cosignatures, refusals kept, and the atomic update."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.witness import store
from services.witness.domain import Latest
from services.witness.errors import BadProof, NotTrusted, OldSizeMismatch, RootMismatch, WitnessError
from services.witness.service import Witness
from shared.clock import FrozenClock
from shared.tlog.cosignature import Cosigner, cosignatures
from shared.tlog.note import CheckpointBody, NoteSigner
from tests.builders import T0
from tests.witness.conftest import ORIGIN, Log, make_witness, seed
from tests.witness.spec_verifier import SpecError, checkpoint_body, verify_response


def stored(witness: Witness) -> Latest | None:
    with witness.db.read() as conn:
        return store.load_latest(conn, ORIGIN)


def test_a_checkpoint_is_cosigned_and_becomes_the_latest(witness: Witness, log: Log, clock: FrozenClock) -> None:
    clock.advance(timedelta(seconds=7))
    lines = witness.add_checkpoint(log.submission(0, 5))
    assert verify_response(lines, checkpoint_body(log.checkpoint(5)), witness.vkey) == int(T0.timestamp()) + 7
    # The project's own verifier agrees with the one written from the spec.
    assert cosignatures(log.checkpoint(5) + lines, [witness.cosigner.verifier]) == {witness.cosigner.name: 1772442007}
    assert stored(witness) == Latest(5, log.root(5), log.checkpoint(5))
    witness.add_checkpoint(log.submission(5, 9))
    assert stored(witness) == Latest(9, log.root(9), log.checkpoint(9))


def test_extension_lines_are_cosigned_with_the_rest_of_the_body(witness: Witness, log: Log) -> None:
    body = CheckpointBody(ORIGIN, 5, log.root(5)).text() + "extension: one more line\n"
    note = log.signer.sign(body)
    lines = witness.add_checkpoint(f"old 0\n\n{note}".encode())
    verify_response(lines, body, witness.vkey)
    with pytest.raises(SpecError):
        verify_response(lines, CheckpointBody(ORIGIN, 5, log.root(5)).text(), witness.vkey)


def test_the_spec_verifier_refuses_a_cosignature_of_another_body_or_key(witness: Witness, log: Log) -> None:
    lines = witness.add_checkpoint(log.submission(0, 5))
    with pytest.raises(SpecError, match="does not verify"):
        verify_response(lines, checkpoint_body(log.checkpoint(6)), witness.vkey)
    with pytest.raises(SpecError, match="no cosignature"):
        verify_response(
            lines, checkpoint_body(log.checkpoint(5)), Cosigner("witness.example.net/w1", seed("x")).verifier.vkey
        )


def test_a_refusal_leaves_the_latest_as_it_was(witness: Witness, log: Log) -> None:
    witness.add_checkpoint(log.submission(0, 8))
    with pytest.raises(OldSizeMismatch) as refused:
        witness.add_checkpoint(log.submission(4, 12))
    assert refused.value.latest_size == 8
    with pytest.raises(BadProof):
        witness.add_checkpoint(Log(log.signer, salt=b"fork").submission(8, 12))
    assert stored(witness) == Latest(8, log.root(8), log.checkpoint(8))


def test_a_fork_is_kept_with_both_checkpoints(witness: Witness, log: Log, clock: FrozenClock) -> None:
    witness.add_checkpoint(log.submission(0, 8))
    fork = Log(log.signer, salt=b"fork")
    clock.advance(timedelta(minutes=1))
    with pytest.raises(RootMismatch):
        witness.add_checkpoint(fork.submission(8, 8))
    with pytest.raises(RootMismatch):
        witness.add_checkpoint(fork.submission(8, 8))  # the same request again: one record
    [kept] = witness.refusals()
    assert (kept.origin, kept.code, kept.old_size, kept.at) == (ORIGIN, "root-mismatch", 8, T0 + timedelta(minutes=1))
    assert kept.note == fork.checkpoint(8) and kept.latest_note == log.checkpoint(8)
    assert kept.note != kept.latest_note  # two signed statements of size 8 that disagree: the proof of a fork


def test_unsigned_submissions_are_not_kept(witness: Witness, log: Log) -> None:
    impostor = Log(NoteSigner(ORIGIN, seed("impostor")))
    with pytest.raises(NotTrusted):
        witness.add_checkpoint(impostor.submission(0, 3))
    assert witness.refusals() == [] and stored(witness) is None


def test_refusals_page_by_id_and_filter_by_origin(witness: Witness, log: Log) -> None:
    witness.add_checkpoint(log.submission(0, 8))
    for old in (1, 2, 3):
        with pytest.raises(OldSizeMismatch):
            witness.add_checkpoint(log.submission(old, 9))
    first = witness.refusals(limit=2)
    assert [r.old_size for r in first] == [1, 2]
    assert [r.old_size for r in witness.refusals(after=first[-1].id)] == [3]
    assert witness.refusals(origin="other.example/log") == []


def test_a_stale_compare_and_swap_writes_nothing(witness: Witness, log: Log) -> None:
    witness.add_checkpoint(log.submission(0, 8))
    with witness.db.transaction() as conn:
        stale = Latest(4, log.root(4), log.checkpoint(4))
        assert not store.save_latest(conn, ORIGIN, stale, Latest(6, log.root(6), log.checkpoint(6)), T0)
        assert not store.save_latest(conn, ORIGIN, None, Latest(6, log.root(6), log.checkpoint(6)), T0)
    assert stored(witness) == Latest(8, log.root(8), log.checkpoint(8))


def race(witnesses: list[Witness], bodies: list[bytes]) -> list[str | WitnessError]:
    """Each witness sends its body at the same moment (a barrier releases the threads together)."""
    barrier = threading.Barrier(len(bodies))
    results: dict[int, str | BaseException] = {}

    def submit(n: int) -> None:
        try:
            barrier.wait()
            results[n] = witnesses[n].add_checkpoint(bodies[n])
        except BaseException as exc:  # noqa: BLE001 - every thread's outcome is collected, the unexpected too
            results[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    outcomes = [results.get(n, TimeoutError(f"submission {n} did not finish")) for n in range(len(bodies))]
    unexpected = [r for r in outcomes if isinstance(r, BaseException) and not isinstance(r, WitnessError)]
    assert not unexpected, unexpected
    return [r for r in outcomes if isinstance(r, str | WitnessError)]


@pytest.mark.parametrize("first", [True, False], ids=["first-checkpoint", "from-a-stored-one"])
def test_two_racing_submissions_from_the_same_state_cannot_both_succeed(
    witness_db_url: str, log_signer: NoteSigner, cosigner: Cosigner, clock: FrozenClock, log: Log, first: bool
) -> None:
    # Two witness processes' worth (own engines, no shared in-process lock) on one database; each round both send a
    # checkpoint that extends the same stored state, released together. Exactly one may be cosigned.
    witnesses = [make_witness(witness_db_url, log_signer, cosigner, clock) for _ in range(2)]
    try:
        size = 0 if first else 4
        if not first:
            witnesses[0].add_checkpoint(log.submission(0, size))
        for _ in range(1 if first else 8):
            bodies = [log.submission(size, size + 3), log.submission(size, size + 5)]
            results = race(witnesses, bodies)
            won = [n for n, r in enumerate(results) if isinstance(r, str)]
            assert len(won) == 1, results
            loser = results[1 - won[0]]
            winner_size = size + (3, 5)[won[0]]
            assert isinstance(loser, OldSizeMismatch) and loser.latest_size == winner_size
            assert stored(witnesses[0]) == Latest(winner_size, log.root(winner_size), log.checkpoint(winner_size))
            size = winner_size
        with witnesses[0].db.read() as conn:
            assert conn.execute(select(func.count()).select_from(store.latest_checkpoints)).scalar_one() == 1
    finally:
        for w in witnesses:
            w.db.engine.dispose()
