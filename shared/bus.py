"""The message bus: which readers a recorded event reaches, inside the command's transaction or after its commit.

Handlers are registered in `services/bootstrap.py`, the one wiring place, so that no service imports another to
call it back. An in-transaction handler (the webhook outbox) writes in the same transaction as the events, so a
crash cannot separate them; an after-commit handler (waking the sequencer or the notifier) runs only once the
events are durable, and never for a transaction that rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from shared.db import after_commit
from shared.eventstore import RecordedEvent


@dataclass(frozen=True)
class Published:
    """A recorded event, with its stream's client view as the command left it (what readers push or project)."""

    event: RecordedEvent
    view: Mapping[str, Any]


InTransaction = Callable[[Connection, Published], None]
AfterCommit = Callable[[], None]


class MessageBus:
    """Maps event types to handlers; `publish` is called by a command handler inside its transaction."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[InTransaction]] = {}
        self._after_commit: list[AfterCommit] = []

    def subscribe(self, event_types: Iterable[str], handler: InTransaction) -> None:
        """Run `handler` in the command's transaction for every published event of these types."""
        for event_type in event_types:
            self._handlers.setdefault(event_type, []).append(handler)

    def on_commit(self, handler: AfterCommit) -> None:
        """Run `handler` once after each transaction that published anything commits."""
        self._after_commit.append(handler)

    def publish(self, conn: Connection, published: Iterable[Published]) -> None:
        """Hand each event to its in-transaction handlers, and schedule the after-commit handlers."""
        any_published = False
        for message in published:
            any_published = True
            for handler in self._handlers.get(message.event.type, ()):
                handler(conn, message)
        if any_published:
            after_commit(conn, self._committed)

    def _committed(self) -> None:
        for handler in self._after_commit:
            handler()
