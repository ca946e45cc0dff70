"""A small witness that follows C2SP tlog-witness, for the ledger's tests: a real HTTP server on 127.0.0.1.

It trusts one log (origin and note verifier key, given once the log's key is known), checks each add-checkpoint's
log signature and consistency proof with shared/tlog, keeps the latest size and root in memory (checked and
updated under one lock, as the spec requires), and answers 409 `text/x.tlog.size` when the old size is not its
own. It can be told to fail (`fail_with = 500`) or be taken down and brought back on the same port.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.tlog import merkle
from shared.tlog.cosignature import Cosigner
from shared.tlog.note import NoteError, Verifier, b64decode_strict, open_checkpoint, split_note


class WitnessDouble:
    """One witness: name, key (from a seed derived from the name), state, and the server serving it."""

    def __init__(self, name: str, now: Callable[[], int] | None = None) -> None:
        self.name = name
        self.cosigner = Cosigner(name, hashlib.sha256(f"witness {name}".encode()).digest())
        self.now = now or (lambda: int(time.time()))
        self.log: tuple[str, Verifier] | None = None
        self.size, self.root = 0, merkle.EMPTY_ROOT
        self.fail_with: int | None = None
        self.requests: list[tuple[int, int]] = []  # (old size sent, checkpoint size) of every well-formed request
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
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
        self.log = (origin, verifier)

    def up(self) -> None:
        """Serve (again, on the same port once it had one)."""
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, content_type, answer = witness.answer(self.path, body)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"witness-{self.name}", daemon=True).start()

    def down(self) -> None:
        """Stop serving: connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        """The witness's answer to one request: (status, content type, body)."""
        plain = "text/plain; charset=utf-8"
        if path != "/add-checkpoint":
            return 404, plain, b"not found\n"
        if self.fail_with is not None:
            return self.fail_with, plain, b"failing on purpose\n"
        try:
            text = body.decode("utf-8")
            head, note = text.split("\n\n", 1)
            lines = head.split("\n")
            if not lines[0].startswith("old "):
                raise ValueError("no old size line")
            old = int(lines[0].removeprefix("old "))
            proof = [b64decode_strict(line) for line in lines[1:]]
        except (ValueError, NoteError):
            return 400, plain, b"malformed request\n"
        if self.log is None:
            return 404, plain, b"unknown log\n"
        origin, verifier = self.log
        try:
            checkpoint = open_checkpoint(note, verifier, origin)
        except NoteError:
            return 403, plain, b"no signature by a trusted key\n"
        with self._lock:  # the check of the old size and the update are one step
            self.requests.append((old, checkpoint.size))
            if old > checkpoint.size:
                return 400, plain, b"old size beyond the checkpoint\n"
            if old != self.size:
                return 409, "text/x.tlog.size", f"{self.size}\n".encode()
            if old == checkpoint.size:
                if checkpoint.root != self.root or proof:
                    return 409, plain, b"same size, another root\n"
            elif old == 0:
                if proof:
                    return 400, plain, b"a proof from size 0\n"
            else:
                try:
                    merkle.verify_consistency(old, checkpoint.size, self.root, checkpoint.root, proof)
                except merkle.ProofError:
                    return 422, plain, b"inconsistent\n"
            self.size, self.root = checkpoint.size, checkpoint.root
            line = self.cosigner.cosign(split_note(note)[0], self.now())
        return 200, plain, line.encode()
