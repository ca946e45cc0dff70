import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify(bundle: dict, verifier_key: str) -> None:
    """Raise if the bundle's events are not exactly what the signed checkpoint's tree holds."""
    b64, sha = base64.b64decode, lambda data: hashlib.sha256(data).digest()
    name, key_hash, key = verifier_key.split("+", 2)  # key: base64(0x01 || Ed25519 public key)
    note = bundle["checkpoint"]["note"]
    text, signature = note[: note.rindex("\n\n") + 1], note[note.rindex("\n\n") + 2 :]
    signer, blob = signature.removeprefix("\u2014 ").split()
    if sha(name.encode() + b"\n" + b64(key))[:4].hex() != key_hash or (signer, b64(blob)[:4].hex()) != (name, key_hash):
        raise ValueError("the checkpoint is not signed by this key")
    Ed25519PublicKey.from_public_bytes(b64(key)[1:]).verify(b64(blob)[4:], text.encode())  # raises if forged
    origin, size, root = text.split("\n")[:3]
    size, root = int(size), b64(root)
    if origin != name:
        raise ValueError("the checkpoint is of another log")
    stream = [(e["envelope"]["stream_id"], e["envelope"]["version"]) for e in bundle["events"]]
    if stream != [(bundle["order_id"], v) for v in range(1, len(stream) + 1)]:
        raise ValueError("the order's events are not all there, in order")
    for event in bundle["events"] + bundle["platform_events"]:
        leaf = event["leaf"].encode()  # the RFC 8785 bytes the ledger hashed; the envelope must say the same
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
