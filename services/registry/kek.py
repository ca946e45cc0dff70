"""The key-encryption key (KEK) of the platforms' webhook signing secrets, and the sealed form they are stored in.

A secret at rest is `sealed:v1:<key id>:<base64url(nonce || AES-256-GCM ciphertext and tag)>`, with the platform
id as associated data, so a sealed secret copied onto another platform's row does not open. The KEK is never in
the database: from TAKEDOWN_SECRETS_KEK (base64 of 32 bytes) or the file TAKEDOWN_SECRETS_KEK_FILE, made with mode
0600 on first use outside production. The key id (a hash of the key) says which KEK sealed a row, so that a
rotation can be run while processes that hold both keys keep reading every row.

A value without the prefix is a secret stored before sealing existed (format 0, plaintext): it is still read, so
that deliveries go on during an upgrade, and is sealed at the start of every process that holds the KEK and by
`takedown secrets seal` / `rotate-kek`. The migration cannot do it, as it does not hold the KEK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.registry.errors import SecretsKeyError
from shared.keyfile import decode_key, read_or_create
from shared.settings import Settings

SEALED_PREFIX = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12


def key_id(key: bytes) -> str:
    """A KEK's id: 16 hex digits of a hash of it (names the key in every row it sealed, reveals nothing of it)."""
    return hashlib.sha256(b"takedown secrets kek\x00" + key).hexdigest()[:16]


def is_sealed(stored: str) -> bool:
    """Whether a stored secret is sealed (format v1), not a plaintext one from before sealing."""
    return stored.startswith(SEALED_PREFIX)


def sealed_by(stored: str) -> str | None:
    """The key id a stored secret was sealed with (None: plaintext)."""
    if not is_sealed(stored):
        return None
    return stored[len(SEALED_PREFIX) :].split(":", 1)[0]


@dataclass(frozen=True)
class Kek:
    """One key-encryption key (its bytes never in a repr or a log line)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise SecretsKeyError(f"a secrets KEK is {KEY_BYTES} bytes, not {len(self.key)}")

    @property
    def id(self) -> str:
        """This key's id."""
        return key_id(self.key)


@dataclass(frozen=True)
class Keyring:
    """The KEK that seals (`current`) and any others that still open rows sealed before a rotation."""

    current: Kek
    retired: tuple[Kek, ...] = ()

    def seal(self, secret: str, platform_id: str) -> str:
        """The stored form of a platform's secret, sealed with the current KEK."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current.key).encrypt(nonce, secret.encode(), platform_id.encode())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{SEALED_PREFIX}{self.current.id}:{blob}"

    def open(self, stored: str, platform_id: str) -> str:
        """A platform's secret from its stored form (plaintext passes through); SecretsKeyError if it cannot."""
        if not is_sealed(stored):
            return stored
        kid, _, blob = stored[len(SEALED_PREFIX) :].partition(":")
        kek = next((k for k in (self.current, *self.retired) if k.id == kid), None)
        if kek is None:
            raise SecretsKeyError(f"the secret of platform {platform_id} is sealed with KEK {kid}, which is not held")
        try:
            raw = base64.urlsafe_b64decode(blob.encode("ascii"))
            return AESGCM(kek.key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], platform_id.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretsKeyError(f"the sealed secret of platform {platform_id} does not open (altered?)") from exc

    def needs_sealing(self, stored: str | None) -> bool:
        """Whether a stored value must be (re)sealed to be under the current KEK (plaintext, or an older key)."""
        return stored is not None and sealed_by(stored) != self.current.id

    def with_retired(self, others: Iterable[Kek]) -> Keyring:
        """This keyring, also able to open what `others` sealed."""
        known = {k.id for k in (self.current, *self.retired)}
        return Keyring(self.current, (*self.retired, *(k for k in others if k.id not in known)))


def load_kek(value: str | None, path: str, *, create: bool) -> Kek:
    """A KEK from a base64 value if given, else from its key file (made with mode 0600 if missing and `create`)."""
    try:
        if value:
            return Kek(decode_key(value, KEY_BYTES, "TAKEDOWN_SECRETS_KEK"))
        return Kek(read_or_create(path, KEY_BYTES, create=create))
    except FileNotFoundError as exc:
        raise SecretsKeyError(
            f"{path}: no secrets KEK; production never makes one (a process with a new KEK could not open the"
            " secrets the others sealed): create it (`takedown secrets rotate-kek --new-file`) or set"
            " TAKEDOWN_SECRETS_KEK"
        ) from exc
    except (OSError, ValueError) as exc:
        raise SecretsKeyError(f"secrets KEK unusable: {exc}") from exc


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keyring as configured: the current KEK (made on first use outside production) and the retired ones."""
    value = settings.secrets_kek.get_secret_value() if settings.secrets_kek is not None else None
    current = load_kek(value, settings.secrets_kek_file, create=not settings.production)
    retired = [load_kek(None, path, create=False) for path in settings.secrets_kek_retired_files]
    return Keyring(current).with_retired(retired)
