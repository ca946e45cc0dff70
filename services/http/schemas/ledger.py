"""The HTTP shapes of the ledger: the signed checkpoint, the verifier key, consistency and inclusion proofs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    """A signed checkpoint (c2sp.org/tlog-checkpoint) and what it states."""

    origin: str
    tree_size: int
    root_hash: str = Field(description="base64 SHA-256 root")
    note: str = Field(description="the signed note, verifiable with the key from /v1/ledger/public-key")
    created_at: datetime


class PublicKeyOut(BaseModel):
    """The note verifier key of the checkpoint signer."""

    verifier_key: str = Field(description="<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>")
    key_name: str
    key_hash: str
    algorithm: str = "ed25519"
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
