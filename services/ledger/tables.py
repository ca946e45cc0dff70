"""The ledger's tables: subtree hashes, the head (feeder position), checkpoints, identity, keys, witnesses."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Integer, LargeBinary, SmallInteger, String, Table, Text

from shared.db import UtcDateTime, metadata

# The root of every complete subtree, (level, idx) covering leaves [idx * 2**level, (idx + 1) * 2**level); level 0
# holds the leaf hashes. Rows are only ever inserted: a complete subtree never changes.
ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# One row: the tree's size and root. The size is also the feeder's tracking position (leaf index = position - 1),
# written in the same transaction as the nodes, so the tree and its position never disagree.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
    CheckConstraint("id = 1", name="single_row"),
)

# Every signed checkpoint the ledger has issued (one per tree size: Ed25519 signatures are deterministic).
ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("origin", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# The ledger's identity, written once when the ledger is first used (first start, `takedown keys init-ledger` or
# any ledger command) and never changed: the checkpoint origin and the signing key's name. One row.
ledger_identity = Table(
    "ledger_identity",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("origin", String(200), nullable=False),
    Column("key_name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# The chain of checkpoint keys (services/ledger/rotation.py): seq 0 is the first key, each later one was named by
# a rotation statement signed by the key before it; a key signs the checkpoints of tree sizes from `from_size` on.
ledger_keys = Table(
    "ledger_keys",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("verifier_key", Text, nullable=False),
    Column("from_size", BigInteger, nullable=False),
    Column("statement", Text, nullable=True),  # the signed rotation note; NULL for the first key
    Column("created_at", UtcDateTime, nullable=False),
)

# Leaf formats after the first (services/ledger/leaf.py): leaf indexes from `from_size` on have this format.
ledger_leaf_formats = Table(
    "ledger_leaf_formats",
    metadata,
    Column("format", SmallInteger, primary_key=True, autoincrement=False),
    Column("from_size", BigInteger, nullable=False),
)

# The operator's signed decisions to keep a refused event out of the tree (`takedown ledger quarantine`): the
# feeder puts a leaf committing to the decision at that position instead of the event. Rows are only inserted.
ledger_quarantine = Table(
    "ledger_quarantine",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False),
    Column("event_leaf", LargeBinary(32), nullable=False),
    Column("fault", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    # The decision signed by the checkpoint key, as a note (services/ledger/admission.py `decision_text`).
    Column("note", Text, nullable=False),
)

# The witnesses' cosignatures of our checkpoints (C2SP tlog-cosignature), as they answered: one per witness and
# tree size. `timestamp` is the POSIX time the cosignature states; `received_at` is ours. Rows are only inserted.
ledger_cosignatures = Table(
    "ledger_cosignatures",
    metadata,
    Column("witness", String(200), primary_key=True),
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

# Per witness: the largest tree size it has cosigned (or told us it holds, in a 409), which the next submission
# sends as its old size, and the backoff after failures to cosign the checkpoint of `attempted_size` (shared by
# every feeder process; a newer checkpoint is tried at once).
ledger_witness_state = Table(
    "ledger_witness_state",
    metadata,
    Column("witness", String(200), primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("attempted_size", BigInteger, nullable=True),
    Column("retry_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)
