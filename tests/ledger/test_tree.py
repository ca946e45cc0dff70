"""The tree in the database (both backends): fed by position, proofs by key, tracking in the feeder's transaction."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from services.ledger import tree
from services.ledger.errors import InvalidRange, PositionNotFound, TreeTooSmall
from services.ledger.leaf import V2, leaf_hash
from services.ledger.service import Ledger
from services.ledger.tables import ledger_head, ledger_nodes
from services.ledger.tree import LedgerFeeder
from shared.db import Database
from shared.eventstore import EventStore
from shared.tlog import merkle
from tests.ledger.conftest import append_events


def _leaf_hashes(db: Database) -> list[bytes]:
    with db.read() as conn:
        return [leaf_hash(e, V2) for e in EventStore(db.dialect).read_all(conn, limit=100_000, seals=True)]


def _node_count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(ledger_nodes)).scalar_one())


def test_feeder_builds_the_rfc_tree_and_serves_proofs_that_verify(db: Database, ledger: Ledger) -> None:
    append_events(db, 37)
    assert ledger.feed() == 37
    hashes = _leaf_hashes(db)
    head = ledger.head()
    assert head.size == 37 and head.root == merkle.root_of(hashes)
    # Only complete subtrees are stored: 2n - popcount(n) of them.
    assert _node_count(db) == 2 * 37 - bin(37).count("1")
    for size in (1, 2, 5, 16, 37):
        root = merkle.root_of(hashes[:size])
        for position in range(1, size + 1):
            p = ledger.inclusion(position, size)
            assert (p.index, p.leaf_hash, p.root) == (position - 1, hashes[position - 1], root)
            merkle.verify_inclusion(p.index, size, p.leaf_hash, p.proof, root)
        for first in range(1, size + 1):
            c = ledger.consistency(first, size)
            assert c.first_root == merkle.root_of(hashes[:first]) and c.second_root == root
            merkle.verify_consistency(first, size, c.first_root, c.second_root, c.proof)


def test_small_batches_build_the_same_tree_as_one(db: Database, ledger: Ledger) -> None:
    append_events(db, 23)
    feeder = LedgerFeeder(db, ledger.store, ledger.intake, batch=4)
    assert feeder.catch_up() == 23
    assert ledger.head().root == merkle.root_of(_leaf_hashes(db))
    append_events(db, 9, start=23)
    assert feeder.catch_up() == 9
    assert ledger.head().root == merkle.root_of(_leaf_hashes(db))
    assert feeder.catch_up() == 0


def test_feeders_taking_turns_and_a_rolled_back_batch_leave_no_stale_right_edge(db: Database, ledger: Ledger) -> None:
    # Each feeder keeps the right edge its last append made; when another fed since, or its own batch rolled
    # back, the head no longer matches and the edge is read again.
    one, two = (LedgerFeeder(db, ledger.store, ledger.intake, batch=3) for _ in range(2))
    append_events(db, 20)
    for turn in range(6):
        assert (one if turn % 2 else two)._fed_once() == 3
        assert ledger.head().root == merkle.root_of(_leaf_hashes(db)[: 3 * (turn + 1)])
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert one.run_once(conn) == 2  # positions 19 and 20 (the batch is 3; two are left)
        raise RuntimeError("rolled back")
    assert ledger.head().size == 18 and two.catch_up() == 2 and one.catch_up() == 0
    append_events(db, 5, start=20)
    assert one.catch_up() == 5
    assert ledger.head().root == merkle.root_of(_leaf_hashes(db))


def test_tracking_position_is_written_in_the_feeders_transaction(db: Database, ledger: Ledger) -> None:
    append_events(db, 10)
    feeder = LedgerFeeder(db, ledger.store, ledger.intake)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.transaction() as conn:
        assert feeder.run_once(conn) == 10
        assert tree.head(conn).size == 10  # visible inside the transaction...
        raise Abort
    assert ledger.head().size == 0  # ...and gone with it: no head without nodes, no nodes without head
    assert _node_count(db) == 0
    with db.transaction() as conn:
        assert feeder.run_once(conn) == 10
    assert ledger.head().size == 10 and _node_count(db) == 2 * 10 - 2


def test_proof_requests_beyond_the_tree_are_refused(db: Database, ledger: Ledger) -> None:
    append_events(db, 5)
    ledger.feed()
    append_events(db, 2, start=5)  # sequenced but not yet fed
    with pytest.raises(TreeTooSmall):
        ledger.inclusion(1, 6)
    with pytest.raises(TreeTooSmall):
        ledger.consistency(1, 7)
    with pytest.raises(InvalidRange):
        ledger.inclusion(5, 4)
    with pytest.raises(InvalidRange):
        ledger.consistency(3, 2)
    with pytest.raises(InvalidRange):
        ledger.consistency(0, 2)
    with db.read() as conn:
        assert tree.root_at(conn, 0) == merkle.EMPTY_ROOT
        with pytest.raises(TreeTooSmall):
            tree.root_at(conn, 6)


def test_a_proof_reads_only_logarithmically_many_rows(db: Database, ledger: Ledger) -> None:
    """Proofs ask for O(log n) nodes by key in one query, whatever the tree's size."""
    append_events(db, 3)
    ledger.feed()
    statements: list[str] = []
    with db.read() as conn:
        from sqlalchemy import event

        @event.listens_for(conn, "before_cursor_execute")
        def _count(_c: object, _cur: object, statement: str, *_: object) -> None:
            statements.append(statement)

        tree.consistency_proof(conn, 1, 3)
    assert len([s for s in statements if "ledger_nodes" in s]) == 1


def test_position_not_found_when_the_event_is_gone(db: Database, ledger: Ledger) -> None:
    append_events(db, 3)
    ledger.feed()
    with db.transaction() as conn:  # hide the event behind the service's back: its position row loses its event
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER events_no_delete"))
        conn.execute(text("DELETE FROM events WHERE id = (SELECT event_pk FROM event_positions WHERE position = 2)"))
    with pytest.raises(PositionNotFound):
        ledger.inclusion(2, 3)


def test_sqlite_and_postgresql_refuse_changes_to_history(db: Database) -> None:
    append_events(db, 2)
    for statement in (
        "UPDATE events SET type = 'x'",
        "DELETE FROM events",
        "UPDATE event_positions SET position = position + 10",
        "DELETE FROM event_positions",
    ):
        with pytest.raises(Exception, match="append-only"), db.transaction() as conn:
            conn.execute(text(statement))
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 2


def test_concurrent_feeders_build_one_tree(db: Database, ledger: Ledger) -> None:
    append_events(db, 60)
    feeders = [LedgerFeeder(db, ledger.store, ledger.intake, batch=7) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(feeders))

    def run(feeder: LedgerFeeder) -> None:
        try:
            start.wait()
            for _ in range(20):
                feeder.catch_up()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in feeders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ledger.feed() == 0
    assert ledger.head().root == merkle.root_of(_leaf_hashes(db))
    assert _node_count(db) == 2 * 60 - bin(60).count("1")


def test_background_loop_feeds_and_checkpoints(db: Database, ledger: Ledger) -> None:
    ledger.feeder.loop.interval_s = 0.01
    ledger.checkpoint_interval_s = 0.0
    append_events(db, 4)
    ledger.start()
    try:
        for _ in range(500):
            with db.read() as conn:
                size = conn.execute(select(ledger_head.c.tree_size)).scalar_one()
            if size == 4:
                break
            threading.Event().wait(0.01)
        for _ in range(500):
            try:
                if ledger.latest_checkpoint().tree_size == 4:
                    break
            except Exception:  # noqa: BLE001 - not made yet
                pass
            threading.Event().wait(0.01)
    finally:
        ledger.stop()
    assert ledger.head().size == 4
    assert ledger.latest_checkpoint().tree_size == 4


def test_direct_bulk_build_matches_the_rfc_tree(db: Database, ledger: Ledger) -> None:
    """The bench fills big trees with `tree.append` on synthetic leaves, in chunks: the feeder's own write path."""
    hashes = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(1000)]
    done = 0
    for chunk in (1, 2, 300, 97, 600):
        with db.transaction() as conn:
            current = tree.lock_head(conn)
            assert current is not None and current.size == done
            tree.append(conn, current, hashes[done : done + chunk])
        done += chunk
    with db.read() as conn:
        assert tree.head(conn).root == merkle.root_of(hashes)
        for index in (0, 511, 512, 999):
            path = tree.inclusion_proof(conn, index, 1000)
            merkle.verify_inclusion(index, 1000, hashes[index], path.proof, merkle.root_of(hashes))
        with pytest.raises(InvalidRange):
            tree.inclusion_proof(conn, 1000, 1000)
