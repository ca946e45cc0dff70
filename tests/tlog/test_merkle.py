"""The Merkle math against the published RFC 6962 vectors, a literal reading of RFC 9162, and random trees."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tlog import merkle

VECTORS = Path(__file__).parent / "vectors"

# The leaves and roots of the RFC 6962 reference tree that transparency-dev/merkle and Go's tlog tests use.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 90, f"the {kind} vectors are missing"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]

    def check() -> None:
        merkle.verify_inclusion(case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))

    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("case", _cases("consistency"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]

    def check() -> None:
        merkle.verify_consistency(case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof)

    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


def test_vectors_include_cases_that_must_pass_and_fail() -> None:
    for kind in ("inclusion", "consistency"):
        wants = [c.values[0]["wantErr"] for c in _cases(kind)]
        assert wants.count(False) >= 5 and wants.count(True) >= 50


def test_hashes_and_reference_roots() -> None:
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.leaf_hash(b"").hex() == REFERENCE_ROOTS[0]
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    for n, want in enumerate(REFERENCE_ROOTS, start=1):
        assert merkle.root_of(hashes[:n]).hex() == want
        assert _mth(hashes[:n]).hex() == want


def test_generated_proofs_match_the_vectors() -> None:
    """Our generator, not only our verifier, reproduces the published proofs of the reference tree."""
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    get = _node_getter(hashes)
    matched = 0
    for param in _cases("inclusion"):
        case = param.values[0]
        if case["wantErr"] or case["treeSize"] > 8 or (case["treeSize"] == 1 and not case["proof"]):
            continue
        if _b64(case["root"]).hex() != REFERENCE_ROOTS[case["treeSize"] - 1]:
            continue
        assert merkle.inclusion_proof(case["leafIdx"], case["treeSize"], get) == [_b64(p) for p in case["proof"]]
        matched += 1
    for param in _cases("consistency"):
        case = param.values[0]
        if case["wantErr"] or case["size2"] > 8 or case["size1"] == case["size2"]:
            continue
        assert merkle.consistency_proof(case["size1"], case["size2"], get) == [_b64(p) for p in case["proof"]]
        matched += 1
    assert matched >= 6


# ----------------------------------------------------------------------------------------------- RFC, literally


def _mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, recursively, over leaf hashes."""
    if not d:
        return merkle.EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    if m == len(d):
        return [] if b else [_mth(d)]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def _node_getter(hashes: list[bytes]) -> merkle.NodeGetter:
    """Complete nodes built by the same incremental append the database uses."""
    stored: dict[tuple[int, int], bytes] = {}
    frontier: dict[int, bytes] = {}
    for i, h in enumerate(hashes):
        for level, idx, value in merkle.append_leaf(frontier, i, h):
            stored[(level, idx)] = value
    return lambda level, idx: stored[(level, idx)]


def test_literal_rfc_and_node_store_agree_on_small_trees() -> None:
    for n in range(1, 70):
        hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
        get = _node_getter(hashes)
        assert merkle.root_at(n, get) == _mth(hashes) == merkle.root_of(hashes)
        for m in range(n):
            assert merkle.inclusion_proof(m, n, get) == _path(m, hashes)
        for m in range(1, n):
            assert merkle.consistency_proof(m, n, get) == _subproof(m, hashes, True)


# ----------------------------------------------------------------------------------------------- random trees


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=1, max_value=3000), seed=st.binary(min_size=1, max_size=8), data=st.data())
def test_every_proof_of_a_random_tree_verifies(size: int, seed: bytes, data: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(seed + i.to_bytes(4, "big")) for i in range(size)]
    get = _node_getter(hashes)
    root = merkle.root_at(size, get)
    assert root == merkle.root_of(hashes)
    roots = [merkle.EMPTY_ROOT]
    frontier: dict[int, bytes] = {}
    for i, h in enumerate(hashes):
        merkle.append_leaf(frontier, i, h)
        roots.append(merkle.frontier_root(frontier))
    assert roots[size] == root
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, get)
        merkle.verify_inclusion(index, size, hashes[index], proof, root)
    for first in range(1, size + 1):
        proof = merkle.consistency_proof(first, size, get)
        merkle.verify_consistency(first, size, roots[first], root, proof)
    # A sample of wrong claims must fail: another leaf, another index, a flipped bit in the proof, another root.
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(index, size, get)
    other = (index + 1) % size
    if other != index:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, hashes[other], proof, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(other, size, hashes[index], proof, root)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], bytes([proof[at][0] ^ 1]) + proof[at][1:], *proof[at + 1 :]]
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, hashes[index], bad, root)
    first = data.draw(st.integers(1, size))
    proof = merkle.consistency_proof(first, size, get)
    if first < size:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, size, roots[first - 1] if first > 1 else root, root, proof)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, size, roots[first], roots[size - 1], proof)


def test_plans_read_logarithmically_many_nodes() -> None:
    n = 1_000_003
    for index in (0, 1, n // 2, n - 1):
        assert len(merkle.plan_nodes(merkle.inclusion_plan(index, n))) <= 2 * n.bit_length()
    for first in (1, 2, 1000, n // 2, n - 1):
        assert len(merkle.plan_nodes(merkle.consistency_plan(first, n))) <= 2 * n.bit_length()
