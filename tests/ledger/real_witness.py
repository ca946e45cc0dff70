"""The repository's own witness (`services/witness/`, its app under a real uvicorn on 127.0.0.1), shaped like the
test double: the log's integration tests run against both."""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from services.http.witness import create_witness_app
from services.witness import store
from services.witness.service import Witness
from shared.clock import FrozenClock
from shared.db import Database, make_engine
from shared.tlog.cosignature import Cosigner
from shared.tlog.note import Verifier
from tests.notifier.receiver import unused_port


class RealWitness:
    """One `takedown witness` (its own SQLite store, its key from a seed derived from the name), served for real."""

    def __init__(self, name: str, now: int) -> None:
        self.name = name
        self.cosigner = Cosigner(name, hashlib.sha256(f"witness {name}".encode()).digest())
        engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='witness-')) / 'witness.db'}")
        store.create(engine)
        clock = FrozenClock(datetime.fromtimestamp(now, UTC))
        self.witness = Witness(Database(engine), {}, self.cosigner, clock)
        self.port = unused_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.up()

    @property
    def vkey(self) -> str:
        """The witness's cosignature/v1 verifier key."""
        return self.cosigner.verifier.vkey

    @property
    def url(self) -> str:
        """Its submission prefix."""
        return f"http://127.0.0.1:{self.port}"

    def trust(self, origin: str, verifier: Verifier) -> None:
        """The log this witness cosigns."""
        self.witness.logs[origin] = [verifier]

    def up(self) -> None:
        """Serve (again, on the same port)."""
        config = uvicorn.Config(create_witness_app(self.witness), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the witness did not start"
            time.sleep(0.02)

    def down(self) -> None:
        """Stop serving: the log finds nobody there."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
