"""Make the secret files docker-compose.yml reads (`make secrets`): random passwords and keys, never overwritten."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")  # a KEK or an Ed25519 seed


def _password() -> str:
    return secrets.token_urlsafe(24)


# The file of each secret in docker-compose.yml's `secrets:`, and how it is made.
FILES: dict[str, Callable[[], str]] = {
    "postgres_password.txt": _password,  # the database superuser's (migrations run as it)
    "app_db_password.txt": _password,  # takedown_app, the service's least-privilege role
    "read_db_password.txt": _password,  # takedown_read, the read side's role on the replica
    "replication_password.txt": _password,  # replicator, the streaming replica's role
    "secrets_kek.txt": _key,  # the key-encryption key of the platforms' webhook secrets
    "ledger_key.txt": _key,  # the ledger's checkpoint signing seed
    "writer_key.txt": _key,  # the writer seed every appending process signs with
    "metrics_key.txt": _password,  # the bearer token Prometheus sends to /metrics
}


def make(directory: Path) -> list[Path]:
    """Write every missing secret file in `directory` (mode 0700); return the files made."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the directory keeps other users of the host out
    made = []
    for name, generate in FILES.items():
        path = directory / name
        if path.exists():
            continue  # a key replaced here would orphan what it sealed or signed
        # 0644: a file secret is bind-mounted as it is, and the containers' users (postgres, uid 10001) must read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate() + "\n")
        made.append(path)
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "secrets")
    for path in make(target):
        print(f"made {path}")
    print(f"secrets in {target}/ (kept: existing files are never replaced)")
