"""Log lines as the service writes them with `log_json`: configured by `configure_logging`, read back parsed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from shared.logs import configure_logging
from shared.settings import Settings


class Lines:
    """The JSON lines written so far (each must parse as one object)."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        return [line for line in self.all() if all(line.get(k) == v for k, v in fields.items())]


@contextmanager
def json_logs(level: str = "INFO") -> Iterator[Lines]:
    """Configure logging as a process with TAKEDOWN_LOG_JSON=true would, into a buffer; undo it afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "apscheduler")}
    saved = root.level
    configure_logging(Settings(log_json=True, log_level=level), stream=stream)
    try:
        yield Lines(stream)
    finally:
        for handler in [h for h in root.handlers if getattr(h, "stream", None) is stream]:
            root.removeHandler(handler)
        root.setLevel(saved)
        for name, level_before in chatty.items():
            logging.getLogger(name).setLevel(level_before)
        structlog.reset_defaults()
