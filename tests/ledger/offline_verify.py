import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

b64, sha = base64.b64decode, lambda data: hashlib.sha256(data).digest()


def signed_text(note: str, verifier_key: str, what: str) -> str:
    """The text of a signed note, if this key (name+hash+base64(0x01 || Ed25519 key)) signed it; raise if not."""
    name, key_hash, key = verifier_key.split("+", 2)
    text, signature = note[: note.rindex("\n\n") + 1], note[note.rindex("\n\n") + 2 :]
    signer, blob = signature.removeprefix("\u2014 ").split()
    if sha(name.encode() + b"\n" + b64(key))[:4].hex() != key_hash or (signer, b64(blob)[:4].hex()) != (name, key_hash):
        raise ValueError(f"the {what} is not signed by this key")
    Ed25519PublicKey.from_public_bytes(b64(key)[1:]).verify(b64(blob)[4:], text.encode())  # raises if forged
    return text


def verify(bundle: dict, verifier_key: str) -> None:
    """Raise if the bundle's events are not exactly what the signed checkpoint's tree holds.

    `verifier_key` is the ledger's first key: each key rotation must be signed by the key before it."""
    name = verifier_key.split("+", 1)[0]
    keys = [(0, verifier_key)]  # (the first tree size it signs, key)
    for statement in bundle.get("key_rotations", []):
        tag, origin, new_key, first = signed_text(statement, keys[-1][1], "key rotation").split("\n")[:4]
        if (tag, origin) != ("takedown-ledger-key-rotation/v1", name) or int(first) <= keys[-1][0]:
            raise ValueError("a key rotation is not one of this log's, in order")
        keys.append((int(first), new_key))
    key_for = lambda size: [key for first, key in keys if first <= size][-1]  # noqa: E731
    claimed = bundle["checkpoint"]["tree_size"]
    text = signed_text(bundle["checkpoint"]["note"], key_for(claimed), "checkpoint")
    origin, size, root = text.split("\n")[:3]
    size, root = int(size), b64(root)
    if origin != name or size != claimed:
        raise ValueError("the checkpoint is of another log, or of another size than it claims")
    stream = [(e["envelope"]["stream_id"], e["envelope"]["version"]) for e in bundle["events"]]
    if stream != [(bundle["order_id"], v) for v in range(1, len(stream) + 1)]:
        raise ValueError("the order's events are not all there, in order")
    for event in bundle["events"] + bundle["platform_events"]:
        # The RFC 8785 bytes the ledger hashed; the envelope must say the same (in leaf format 2, meta and seal too).
        leaf = event["leaf"].encode()
        if json.loads(leaf) != event["envelope"]:
            raise ValueError(f"event {event['envelope']['event_id']}: the envelope is not its leaf")
        index, last, node = event["position"] - 1, size - 1, sha(b"\x00" + leaf)
        for sibling in map(b64, event["proof"]):  # RFC 9162 2.1.3.2
            if index & 1 or index == last:
                node = sha(b"\x01" + sibling + node)
                while index and not index & 1:
                    index, last = index >> 1, last >> 1
            else:
                node = sha(b"\x01" + node + sibling)
            index, last = index >> 1, last >> 1
        if last != 0 or node != root:
            raise ValueError(f"event {event['envelope']['event_id']} is not in the checkpoint's tree")
