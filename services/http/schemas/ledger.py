"""The HTTP shapes of the ledger: the signed checkpoint, the verifier key, consistency and inclusion proofs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    """A signed checkpoint (c2sp.org/tlog-checkpoint) and what it states."""

    origin: str
    tree_size: int
    root_hash: str = Field(description="base64 SHA-256 root")
    note: str = Field(
        description="the signed note, verifiable with the key from /v1/ledger/public-key, followed by the"
        " cosignature/v1 lines of the witnesses that cosigned it (c2sp.org/tlog-cosignature)"
    )
    created_at: datetime


class ChainKeyOut(BaseModel):
    """One checkpoint key of the chain, the tree sizes it signs from, and the statement that named it."""

    verifier_key: str
    from_tree_size: int = Field(description="it signs the checkpoints of this tree size and larger (until the next)")
    rotation: str | None = Field(
        description="the rotation statement, a signed note by the key before it (services/ledger/rotation.py);"
        " null for the first key"
    )


class PublicKeyOut(BaseModel):
    """The note verifier key of the checkpoint signer now, and the chain of keys from the ledger's first."""

    verifier_key: str = Field(description="<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>: in force now")
    key_name: str
    key_hash: str
    algorithm: str = "ed25519"
    origin: str = Field(description="the checkpoint origin, fixed when the ledger was created")
    key_chain: list[ChainKeyOut] = Field(
        default_factory=list, description="every checkpoint key, first first; follow the rotations from a pinned key"
    )
    writer_keys: list[str] = Field(
        default_factory=list, description="the writers' Ed25519 keys that seal events: '<key id>+<base64 key>'"
    )


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof between two tree sizes."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class InclusionOut(BaseModel):
    """RFC 9162 inclusion proof of one event (leaf index = position - 1)."""

    position: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str]
