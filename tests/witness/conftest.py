"""A log to witness (in memory, signed with a note key) and the witness itself, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.witness import store
from services.witness.service import Witness
from shared.clock import Clock, FrozenClock
from shared.db import Database, make_engine
from shared.tlog.cosignature import Cosigner
from shared.tlog.merkle import consistency_proof, leaf_hash, root_of
from shared.tlog.note import CheckpointBody, NoteSigner, sign_checkpoint
from tests.builders import T0
from tests.conftest import drop_pg, fresh_pg_url

ORIGIN = "example.org/takedown/ledger"


@dataclass
class Log:
    """A Merkle tree of numbered leaves whose checkpoints a note key signs (what a real log hands a witness)."""

    signer: NoteSigner
    origin: str = ORIGIN
    salt: bytes = b""  # another salt: another tree of the same sizes (a fork)
    leaves: list[bytes] = field(default_factory=list)

    def grow(self, size: int) -> None:
        """Append leaves until the tree has `size`."""
        while len(self.leaves) < size:
            self.leaves.append(leaf_hash(self.salt + b"leaf %d" % len(self.leaves)))

    def root(self, size: int) -> bytes:
        """The tree head at `size`."""
        self.grow(size)
        return root_of(self.leaves[:size])

    def checkpoint(self, size: int, signer: NoteSigner | None = None) -> str:
        """The signed checkpoint note at `size`."""
        return sign_checkpoint(CheckpointBody(self.origin, size, self.root(size)), signer or self.signer)

    def proof(self, old: int, new: int) -> list[bytes]:
        """The RFC 9162 consistency proof from `old` to `new` (empty from 0)."""
        self.grow(new)
        if old == 0:
            return []

        def node(level: int, index: int) -> bytes:
            return root_of(self.leaves[index << level : (index + 1) << level])

        return consistency_proof(old, new, node)

    def submission(self, old: int, new: int, proof: list[bytes] | None = None) -> bytes:
        """An add-checkpoint body from `old` to the checkpoint at `new`."""
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in (self.proof(old, new) if proof is None else proof))
        return f"old {old}\n{lines}\n{self.checkpoint(new)}".encode()


def seed(label: str) -> bytes:
    """A fixed Ed25519 seed per label (tests are reproducible)."""
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
def log_signer() -> NoteSigner:
    """The log's checkpoint key."""
    return NoteSigner(ORIGIN, seed("log"))


@pytest.fixture
def log(log_signer: NoteSigner) -> Log:
    """The witnessed log."""
    return Log(log_signer)


@pytest.fixture
def cosigner() -> Cosigner:
    """The witness's key."""
    return Cosigner("witness.example.net/w1", seed("witness"))


@pytest.fixture(params=["sqlite", "postgresql"])
def witness_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the witness's own (not the service's: no migrations), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'witness.db'}"
    else:
        request.getfixturevalue("pg_template")  # the reachability check and the skip switch of every PG test
        url = fresh_pg_url(None)
        yield url
        drop_pg(url)


@pytest.fixture
def clock() -> FrozenClock:
    """The witness's clock."""
    return FrozenClock(T0)


def make_witness(url: str, log_signer: NoteSigner, cosigner: Cosigner, clock: Clock, origin: str = ORIGIN) -> Witness:
    """A witness process's worth: its own engine on the database, its tables created, the log trusted."""
    engine = make_engine(url)
    store.create(engine)
    return Witness(Database(engine), {origin: [log_signer.verifier]}, cosigner, clock)


@pytest.fixture
def witness(witness_db_url: str, log_signer: NoteSigner, cosigner: Cosigner, clock: FrozenClock) -> Iterator[Witness]:
    """The witness under test."""
    made = make_witness(witness_db_url, log_signer, cosigner, clock)
    yield made
    made.db.engine.dispose()
