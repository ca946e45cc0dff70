"""Logging of every process: structlog and the standard library's loggers through one handler, JSON or console.

`configure_logging` is called once by each `takedown` command at start-up (never at import time). The code logs
through the standard library (`logging.getLogger(...)`, fields as `extra={...}`); its records go through the same
structlog processors as structlog's own loggers, so a line carries the same fields either way. The id of the HTTP
request being served is a context variable, bound into every log line written while the request runs and recorded
in the meta of the events it causes.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor

from shared.settings import Settings

_request_id: ContextVar[str | None] = ContextVar("takedown_request_id", default=None)

# Libraries that log one INFO line per request they make (httpx: every webhook attempt); our own lines say more.
# Loggers that speak at INFO about routine work: httpx one line per webhook attempt, APScheduler two per job run
# ("Running job", "executed successfully"), every 15 s in every process. Their warnings still show.
_CHATTY = ("httpx", "httpcore", "apscheduler")
_LEADING = ("time", "level", "logger", "message", "request_id")


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this context (None outside a request)."""
    return _request_id.get()


def bind_request_id(request_id: str) -> None:
    """Make `request_id` this context's request id, in log lines and in `current_request_id`, until unbound."""
    _request_id.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)


def unbind_request_id() -> None:
    """End this context's request id."""
    _request_id.set(None)
    structlog.contextvars.unbind_contextvars("request_id")


def _leading_fields(_logger: object, _method: str, event: EventDict) -> EventDict:
    """The fields every line has first, in one order, for a reader scanning lines; the rest as they came."""
    ordered: EventDict = {key: event.pop(key) for key in _LEADING if key in event}
    ordered.update(event)
    return ordered


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler `configure_logging` installs on the root logger (told apart from others, e.g. pytest's)."""


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging to one handler on `stream` (stderr by default).

    With `log_json`, one JSON object per line: `time` (RFC 3339, UTC), `level`, `logger`, `message`, whatever the
    context bound (`request_id` during a request; `delivery_id`, `attempt`, `platform_id` in the notifier) and
    the record's own fields. Otherwise lines for a human at a console. Calling it again replaces its handler.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        # Wall time of the line, not the service's injected clock: logs are read beside other systems' logs.
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    out = stream or sys.stderr
    render: list[Processor]
    if settings.log_json:
        render = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _leading_fields,
            structlog.processors.JSONRenderer(),
        ]
    else:
        # Plain tracebacks: a rich one shows local variables, and those include webhook secrets.
        render = [
            structlog.dev.ConsoleRenderer(
                colors=out.isatty(), timestamp_key="time", exception_formatter=structlog.dev.plain_traceback
            )
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records of standard-library loggers: their `extra={...}` fields become fields of the line.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    level = logging.getLevelNamesMapping()[settings.log_level]
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
