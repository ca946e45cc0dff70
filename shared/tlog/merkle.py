"""RFC 9162 Merkle tree math (pure): leaf and node hashes, tree heads, inclusion and consistency proofs.

Nodes are addressed as (level, index): the node at (level, i) is the root of the complete subtree over the
leaves [i * 2**level, (i + 1) * 2**level); level 0 holds the leaf hashes. Complete subtrees never change once
they exist, so a store can keep them forever; any other subtree of the RFC's recursion (the ragged right edge
of a tree) is folded from at most log2(n) of them. Proof generation therefore takes a node getter and first
says which nodes it needs (`inclusion_plan`, `consistency_plan`), so a database can fetch them in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
# RFC 9162 2.1.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index)
NodeGetter = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not verify, or a request for a proof that cannot exist."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, computed bottom-up (the same value as the RFC's recursion)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    frontier: dict[int, bytes] = {}
    for i, h in enumerate(leaf_hashes):
        append_leaf(frontier, i, h)
    return frontier_root(frontier)


# ----------------------------------------------------------------------------------------------- appending


def append_leaf(frontier: dict[int, bytes], index: int, hashed_leaf: bytes) -> list[tuple[int, int, bytes]]:
    """Add leaf `index` (= the current size) and return the complete nodes it completes, leaf first.

    `frontier` maps level -> the hash of the right-edge complete subtree at that level (one per set bit of the
    tree size); it is updated in place. Each leaf costs 1 + (trailing one-bits of index) nodes: O(log n).
    """
    made = [(0, index, hashed_leaf)]
    level, idx, current = 0, index, hashed_leaf
    while idx & 1:
        current = node_hash(frontier.pop(level), current)
        idx >>= 1
        level += 1
        made.append((level, idx, current))
    frontier[level] = current
    return made


def frontier_nodes(size: int) -> list[Node]:
    """The complete subtrees whose hashes make up the right edge of a tree of `size` leaves, lowest level first."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


def frontier_root(frontier: dict[int, bytes]) -> bytes:
    """The tree head from the right-edge complete subtrees (folded from the lowest level up)."""
    if not frontier:
        return EMPTY_ROOT
    levels = sorted(frontier)
    current = frontier[levels[0]]
    for level in levels[1:]:
        current = node_hash(frontier[level], current)
    return current


# ----------------------------------------------------------------------------------------------- subtrees


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete nodes whose right fold is MTH(D[start:end]), biggest (leftmost) first.

    Valid for every range the RFC's recursion produces: `start` is a multiple of a power of two >= end - start.
    """
    nodes: list[Node] = []
    offset, remaining = start, end - start
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append((level, offset >> level))
        offset += 1 << level
        remaining -= 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold of complete-subtree hashes into the hash of their ragged union: H(a, H(b, c))."""
    current = hashes[-1]
    for h in reversed(hashes[:-1]):
        current = node_hash(h, current)
    return current


def subtree_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) from stored complete nodes."""
    return fold([get(level, idx) for level, idx in range_nodes(start, end)])


def root_at(size: int, get: NodeGetter) -> bytes:
    """The tree head at `size` from stored complete nodes (O(log n) reads)."""
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, get)


# ----------------------------------------------------------------------------------------------- proofs

Plan = list[list[Node]]  # one entry per proof element: the nodes whose fold is that element


def inclusion_plan(index: int, size: int) -> Plan:
    """Which nodes an inclusion proof of leaf `index` in a tree of `size` leaves needs (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    plan: Plan = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            plan.append(range_nodes(start + k, end))
            end = start + k
        else:
            plan.append(range_nodes(start, start + k))
            start, m = start + k, m - k
    plan.reverse()  # the recursion emits the deepest sibling last; the proof lists it first
    return plan


def consistency_plan(first: int, second: int) -> Plan:
    """Which nodes a consistency proof from `first` to `second` leaves needs (RFC 9162 2.1.4.1)."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from {first} to {second} leaves")
    plan: Plan = []
    if first == second:
        return plan
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                plan.append(range_nodes(start, end))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            plan.append(range_nodes(start + k, end))
            end = start + k
        else:
            plan.append(range_nodes(start, start + k))
            start, m, complete = start + k, m - k, False
    plan.reverse()
    return plan


def plan_nodes(plan: Plan) -> set[Node]:
    """Every node a plan reads (to fetch them in one go)."""
    return {node for element in plan for node in element}


def build_proof(plan: Plan, get: NodeGetter) -> list[bytes]:
    """The proof a plan describes, from a node getter."""
    return [fold([get(level, idx) for level, idx in element]) for element in plan]


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves."""
    return build_proof(inclusion_plan(index, size), get)


def consistency_proof(first: int, second: int, get: NodeGetter) -> list[bytes]:
    """The consistency proof between the trees of `first` and `second` leaves."""
    return build_proof(consistency_plan(first, second), get)


# ----------------------------------------------------------------------------------------------- verification


def _check_hashes(proof: Iterable[bytes]) -> list[bytes]:
    hashes = list(proof)
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("a proof element is not a SHA-256 hash")
    return hashes


def root_from_inclusion_proof(index: int, size: int, hashed_leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """The root that this audit path implies (RFC 9162 2.1.3.2); raises ProofError if it is malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    if len(hashed_leaf) != HASH_SIZE:
        raise ProofError("the leaf hash is not a SHA-256 hash")
    fn, sn, r = index, size - 1, hashed_leaf
    for p in _check_hashes(proof):
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    return r


def verify_inclusion(index: int, size: int, hashed_leaf: bytes, proof: Iterable[bytes], root: bytes) -> None:
    """Check an audit path against a tree head; raises ProofError if it does not prove inclusion."""
    if root_from_inclusion_proof(index, size, hashed_leaf, proof) != root:
        raise ProofError("the audit path leads to another root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Iterable[bytes]) -> None:
    """Check a consistency proof (RFC 9162 2.1.4.2); raises ProofError if the trees are not shown consistent.

    A proof from the empty tree proves nothing and is refused, as the published test vectors expect.
    """
    path = list(proof)
    if first < 1:
        raise ProofError("a consistency proof starts from a non-empty tree")
    if first > second:
        raise ProofError(f"the first tree ({first}) is larger than the second ({second})")
    if first == second:
        if path:
            raise ProofError("trees of equal size need an empty proof")
        if first_root != second_root:
            raise ProofError("trees of equal size have different roots")
        return
    if not path:
        raise ProofError("the proof is empty")
    path = _check_hashes(path)
    if first & (first - 1) == 0:  # a power of two: the first tree is itself a node of the second
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    if fr != first_root:
        raise ProofError("the proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("the proof does not lead to the second root")
