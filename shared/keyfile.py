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
    try:
        # O_EXCL: two processes starting together must not each write a different key; the loser reads the winner's.
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decode_key(file.read_text(), size, str(file))
    with os.fdopen(fd, "w") as handle:
        handle.write(encode_key(key) + "\n")
    return key
