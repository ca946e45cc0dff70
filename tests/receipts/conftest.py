"""Receipts kit fixtures: a real service (its app under uvicorn on 127.0.0.1, SQLite, workers driven by the test)
pushing to a real kit (its app under uvicorn, its own SQLite file), and the platform answering through the API."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.http.receipts import create_receipts_app
from services.notifier.sender import transport
from services.notifier.worker import NotifierConfig
from services.receipts import store
from services.receipts.client import LogClient
from services.receipts.service import ReceiptsKit
from shared.clock import FrozenClock
from shared.db import Database, make_engine
from shared.settings import WitnessSetting
from tests.conftest import fresh_sqlite_url
from tests.ledger.real_witness import RealWitness
from tests.notifier.receiver import Receiver, Respond
from tests.support import Api, make_api, serve

# Real time (whole seconds): the kit checks each webhook-timestamp against its clock, the witnesses state it.
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _ledger_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every container built in these tests keeps its checkpoint key in the test's own folder (one per test: two
    services in one test share it, as a log showing two views would)."""
    path = tmp_path / "ledger.key"
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(path))
    monkeypatch.delenv("TAKEDOWN_LEDGER_KEY", raising=False)
    return path


@dataclass
class Platform:
    """The service, the platform's kit in front of it, the platform's own system behind it, and two witnesses."""

    api: Api
    service_url: str
    kit: ReceiptsKit
    kit_url: str
    kit_clock: FrozenClock
    system: Receiver
    witnesses: list[RealWitness]
    kit_db_url: str
    vkey: str  # the log's note verifier key when the kit was set up: what the platform pins

    def rotate_log_key(self) -> None:
        """The log rotates its checkpoint key (a statement signed by the old one names the new); the witnesses are
        told the new key, the kit is not: it follows the rotation from the key it pinned."""
        ledger = self.api.container.ledger
        rotated = ledger.rotate_key(hashlib.sha256(b"the log's second key").digest())
        for w in self.witnesses:
            w.trust(ledger.origin, rotated.new)

    def advance(self, **delta: float) -> None:
        """Both clocks move together (the kit's host and the service's agree within the skew)."""
        self.api.advance(**delta)
        self.kit_clock.advance(timedelta(**delta))

    def push(self) -> int:
        """Every due webhook sent now (the notifier's loop, without the loop)."""
        notifier = self.api.container.notifier

        async def drain() -> int:
            async with transport(4) as pool:
                jobs = await asyncio.to_thread(notifier.claim, notifier.config.total)
                await asyncio.gather(*(notifier.attempt(pool, job) for job in jobs))
                return len(jobs)

        return asyncio.run(drain())

    def checkpoint(self) -> None:
        """The ledger catches up, signs a checkpoint and gathers the witnesses' cosignatures."""
        self.api.container.sequencer.catch_up()
        self.api.container.ledger.checkpoint()
        self.api.container.ledger.witnessing.run_once()

    def answer(self, order: dict[str, Any]) -> None:
        """The platform acknowledges the order and reports every item removed, through the API."""
        r = self.api.call("POST", f"/v1/orders/{order['id']}/acknowledge", "platform_a", json={"note": "on it"})
        assert r.status_code == 200, r.text
        self.advance(hours=2)
        at = self.api.clock.now().isoformat()
        outcomes = [{"item_id": i["item_id"], "outcome": "removed", "actioned_at": at} for i in order["items"]]
        r = self.api.call("POST", f"/v1/orders/{order['id']}/outcomes", "platform_a", json={"outcomes": outcomes})
        assert r.status_code == 200 and r.json()["status"] == "closed", r.text


@contextmanager
def running_platform(tmp_path: Path, sqlite_template: Path, witnessed: bool = True) -> Iterator[Platform]:
    """Start it all on 127.0.0.1; the platform's webhook points at the kit, the kit forwards to `system`."""
    with ExitStack() as stack:
        witnesses = [RealWitness(f"witness.test/{n}", int(NOW.timestamp())) for n in "ab"] if witnessed else []
        for w in witnesses:
            stack.callback(w.down)
        (tmp_path / "service").mkdir()
        db_url = fresh_sqlite_url(sqlite_template, tmp_path / "service")
        settings = [WitnessSetting(name=w.name, vkey=w.vkey, url=w.url) for w in witnesses]
        api = stack.enter_context(make_api(db_url, ledger_witnesses=settings))
        api.clock.set(NOW)
        api.container.notifier.config = NotifierConfig(timeout_s=5, allow_list=("127.0.0.1",))
        ledger = api.container.ledger
        for w in witnesses:
            w.trust(ledger.origin, ledger.verifier)
        service_url = stack.enter_context(serve(api.client.app))
        system = stack.enter_context(Receiver())
        system.script("/orders", Respond(200))
        kit_db_url = f"sqlite:///{tmp_path / 'receipts.db'}"
        engine = make_engine(kit_db_url)
        store.create(engine)
        stack.callback(engine.dispose)
        kit_clock = FrozenClock(NOW)
        kit = ReceiptsKit(
            Database(engine),
            LogClient(service_url, api.keys["platform_a"]),
            ledger.verifier,
            [],
            kit_clock,
            forward_url=system.url("/orders"),
        )
        stack.callback(kit.stop)
        kit_url = stack.enter_context(serve(create_receipts_app(kit)))
        r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": f"{kit_url}/webhook"})
        assert r.status_code == 200, r.text
        rotated = api.call("POST", f"/v1/platforms/{api.platform_a}/secret/rotate", "admin").json()
        kit.secrets[:] = [str(rotated["webhook_secret"])]
        vkey = ledger.verifier.verifier_key
        yield Platform(api, service_url, kit, kit_url, kit_clock, system, witnesses, kit_db_url, vkey)
