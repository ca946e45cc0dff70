"""Key files made on first use: processes starting together all end up with the one key written, never a half file."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared import keyfile


def test_callers_starting_together_all_get_the_one_key_in_the_file(tmp_path: Path) -> None:
    for attempt in range(30):
        path = tmp_path / f"k{attempt}" / "ledger.key"
        start = threading.Barrier(8)

        def first_use(_: int, path: Path = path, start: threading.Barrier = start) -> bytes:
            start.wait()
            return keyfile.read_or_create(path, 32, create=True)

        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(first_use, range(8)))
        assert keys == {keyfile.decode_key(path.read_text(), 32, "file")}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.key"]  # no partial file left behind
