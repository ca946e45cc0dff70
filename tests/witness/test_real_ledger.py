"""The witness fed by the service's real ledger: its signed checkpoints and consistency proofs are cosigned."""

from __future__ import annotations

import base64
from pathlib import Path

from services.ledger.service import Ledger
from shared.clock import FrozenClock
from shared.db import Database
from shared.tlog.cosignature import Cosigner
from tests.ledger.conftest import SEED, T0, append_events, signed_store
from tests.witness.conftest import make_witness
from tests.witness.spec_verifier import checkpoint_body, verify_response


def test_the_ledger_checkpoints_and_proofs_are_cosigned(db: Database, tmp_path: Path, cosigner: Cosigner) -> None:
    ledger = Ledger(
        db, signed_store(db), FrozenClock(T0), origin="ledger.test/takedown", seed=lambda: SEED,
        stream_visible=lambda principal, stream_id: False,
    )  # fmt: skip
    append_events(db, 5)
    first = ledger.checkpoint()
    url = f"sqlite:///{tmp_path / 'witness.db'}"
    witness = make_witness(url, ledger.signer, cosigner, FrozenClock(T0), origin=first.origin)
    try:
        lines = witness.add_checkpoint(f"old 0\n\n{first.note}".encode())
        verify_response(lines, checkpoint_body(first.note), witness.vkey)
        append_events(db, 7, start=5)
        second = ledger.checkpoint()
        proof = ledger.consistency(first.tree_size, second.tree_size).proof
        assert (first.tree_size, second.tree_size) == (5, 12) and proof
        proof_lines = "".join(f"{base64.b64encode(h).decode()}\n" for h in proof)
        lines = witness.add_checkpoint(f"old 5\n{proof_lines}\n{second.note}".encode())
        verify_response(lines, checkpoint_body(second.note), witness.vkey)
    finally:
        witness.db.engine.dispose()
