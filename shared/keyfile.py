"""Key files kept outside the database: one base64 line, made with mode 0600 on first use, never overwritten."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path


def decode_key(text: str, size: int, source: str) -> bytes:
    """The key that `text` spells in base64 (ValueError naming `source` if it is not `size` bytes of base64)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{source}: the key is not base64") from exc
    if len(key) != size:
        raise ValueError(f"{source}: the key must be {size} bytes, not {len(key)}")
    return key


def encode_key(key: bytes) -> str:
    """A key as a key file holds it (base64, no newline)."""
    return base64.b64encode(key).decode("ascii")


def read_or_create(path: str | Path, size: int, *, create: bool) -> bytes:
    """The key in the file at `path`; if there is none and `create`, a new random one, written with mode 0600.

    FileNotFoundError when the file is missing and `create` is false.
    """
    file = Path(path)
    try:
        return decode_key(file.read_text(), size, str(file))
    except FileNotFoundError:
        if not create:
            raise
    key = secrets.token_bytes(size)
    file.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a private name, then linked into place: two processes (or threads) starting together must
    # not each keep a different key, and the loser must never read the winner's file before its key is in it.
    partial = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(encode_key(key) + "\n")
        os.link(partial, file)  # fails if the file exists: the first key linked wins
    except FileExistsError:
        return decode_key(file.read_text(), size, str(file))
    finally:
        partial.unlink(missing_ok=True)
    return key
