"""The tailing-reader helper the sequencer, projection runner and ledger feeder share (shared/loop.py)."""

from __future__ import annotations

import logging
import threading

from shared.loop import TailingReader

log = logging.getLogger("tests.loop")


class Scripted(TailingReader):
    """A reader whose passes take batches of the given sizes, one size a step; it says when a pass ends."""

    def __init__(self, sizes: list[int], batch: int = 5, needed: bool = True) -> None:
        super().__init__("scripted", log, interval_s=60.0)  # a pass runs only when woken
        self.sizes, self.batch, self._needed = sizes, batch, needed
        self.steps = 0
        self.passed = threading.Event()

    @property
    def needed(self) -> bool:
        return self._needed

    def _pass(self) -> None:
        self._drain(self._step, self.batch)
        self.passed.set()

    def _step(self) -> int:
        self.steps += 1
        return self.sizes.pop(0) if self.sizes else 0


def test_a_woken_reader_takes_batches_until_one_is_not_full() -> None:
    reader = Scripted([5, 5, 2, 5])
    reader.start()
    try:
        reader.wake()
        assert reader.passed.wait(10), "the pass did not run"
        assert reader.steps == 3  # 5, 5 (full: more is waiting), 2 (short: caught up); the last 5 waits for a wake
    finally:
        reader.stop()


def test_a_reader_that_is_not_needed_starts_no_thread() -> None:
    reader = Scripted([5], needed=False)
    reader.start()
    assert reader.loop._thread is None
    reader.wake()
    reader.stop()
    assert reader.steps == 0


def test_a_stopping_reader_takes_no_further_batch() -> None:
    reader = Scripted([5, 5, 5])
    reader.loop.stopping.set()
    reader._drain(reader._step, reader.batch)
    assert reader.steps == 1
