"""A scripted HTTP/1.1 webhook receiver on 127.0.0.1 for tests: real sockets, every request recorded."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType


@dataclass(frozen=True)
class Respond:
    """Answer with `status`, `headers` and `body`, after `delay` seconds."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class BlackHole:
    """Read the request and never answer (until the receiver stops)."""


@dataclass(frozen=True)
class Dribble:
    """Send the status line and headers at once, then the body one byte every `interval` seconds."""

    status: int = 200
    length: int = 1000
    interval: float = 0.05


@dataclass(frozen=True)
class Hangup:
    """Close the connection without answering; with `reset`, abort it with a TCP RST."""

    reset: bool = False


@dataclass(frozen=True)
class Garbage:
    """Answer with bytes that are not HTTP."""

    data: bytes = b"SMTP? 220 hello\r\n\r\n"


Behavior = Respond | BlackHole | Dribble | Hangup | Garbage


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # wall clock, comparable with webhook-timestamp
    received_monotonic: float


def unused_port() -> int:
    """Return a 127.0.0.1 port that nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Receiver:
    """HTTP/1.1 server in its own thread and event loop, scripted per path, recording every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Behavior]] = {}
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self.port = 0

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Return http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Return the absolute URL of `path` on this receiver."""
        return self.base_url + path

    def script(self, path: str, *behaviors: Behavior) -> str:
        """Script `path`: the n-th request gets the n-th behaviour, the last one repeats; return its URL."""
        if not behaviors:
            raise ValueError("script at least one behaviour")
        with self._lock:
            self._scripts[path] = list(behaviors)
        return self.url(path)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Return the requests received so far, optionally only those for `path`."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def start(self) -> None:
        """Start serving on an ephemeral port and wait until it accepts connections."""
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("receiver did not start")
        if self._error is not None:
            raise RuntimeError("receiver failed to start") from self._error

    def stop(self) -> None:
        """Stop serving, abandon black-holed and dribbling connections, and join the thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(5)
            if self._thread.is_alive():
                raise RuntimeError("receiver thread did not stop")

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    def _next_behavior(self, path: str) -> Behavior:
        with self._lock:
            script = self._scripts.get(path)
            if script is None:
                return Respond(404, b"no script for this path")
            return script.pop(0) if len(script) > 1 else script[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            with self._lock:
                self._requests.append(request)
            await self._perform(self._next_behavior(request.path), writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _perform(self, behavior: Behavior, writer: asyncio.StreamWriter) -> None:
        match behavior:
            case Respond(status=status, body=body, headers=headers, delay=delay):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(_head(status, {"content-length": str(len(body)), **headers}) + body)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            case BlackHole():
                await asyncio.Event().wait()
            case Dribble(status=status, length=length, interval=interval):
                writer.write(_head(status, {"content-length": str(length)}))
                for _ in range(length):
                    if writer.is_closing():
                        return
                    await writer.drain()
                    await asyncio.sleep(interval)
                    writer.write(b"x")
                await writer.drain()
            case Hangup(reset=reset):
                if reset:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            case Garbage(data=data):
                writer.write(data)
                await writer.drain()
                writer.close()
                await writer.wait_closed()


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    received_at, received_monotonic = time.time(), time.monotonic()
    request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RecordedRequest(method, target, headers, body, received_at, received_monotonic)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
