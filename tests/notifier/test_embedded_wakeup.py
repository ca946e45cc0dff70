"""The embedded default (SQLite, workers in the API process): a commit wakes the notifier, no poll needed."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from services.bootstrap import bootstrap
from services.http.app import create_app
from shared.auth import create_key
from shared.db import WriterQueue, make_engine
from shared.migrate import upgrade
from tests.builders import order_body, platform_fields, service_settings

from .receiver import Receiver, Respond


def _pushed(receiver: Receiver, order_id: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if any(json.loads(r.body)["data"]["order"]["id"] == order_id for r in receiver.requests("/hook")):
            return True
        time.sleep(0.01)
    return False


def test_an_issued_order_is_pushed_on_commit_without_waiting_for_a_poll(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'takedown.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    container = bootstrap(service_settings(url).model_copy(update={"embedded_workers": True}))
    # An hour between polls: only the commit's wake-up can deliver within the test.
    container.notifier.config = dataclasses.replace(container.notifier.config, poll_interval_s=3600.0)
    now = container.clock.now()
    with container.db.transaction() as conn:
        fields = platform_fields("A", webhook_url=receiver.script("/hook", Respond()))
        platform, _ = container.registry.register_in(conn, fields, now)
        key = create_key(conn, "issuer", now, authority_id="mci", authority_name="Ministry")[0]
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(create_app(container)) as client:
            # The first order may meet the notifier's first claim at start-up; the ones after it cannot.
            for n in range(3):
                r = client.post("/v1/orders", json=order_body(platform.id, issuer_reference=f"R-{n}"), headers=headers)
                assert r.status_code == 201, r.text
                assert _pushed(receiver, r.json()["id"], within_s=10.0), f"order {n} was not pushed"
    finally:
        container.close()


def test_urgent_writers_go_before_those_already_waiting() -> None:
    queue = WriterQueue()
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with queue.turn():
            holding.set()
            release.wait(5)

    def writer(name: str, urgent: bool) -> None:
        with queue.turn(urgent):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    assert holding.wait(5)
    waiting = [threading.Thread(target=writer, args=(f"intake-{n}", False)) for n in range(3)]
    for t in waiting:
        t.start()
    time.sleep(0.1)  # the intake writers are queued before the urgent one arrives
    urgent = threading.Thread(target=writer, args=("notifier", True))
    urgent.start()
    time.sleep(0.1)
    release.set()
    for t in [first, *waiting, urgent]:
        t.join(5)
    assert order[0] == "notifier" and sorted(order[1:]) == ["intake-0", "intake-1", "intake-2"]


def test_a_writer_may_open_its_turn_again_in_the_same_thread() -> None:
    queue = WriterQueue()
    with queue.turn(), queue.turn(urgent=True):
        pass
    with queue.turn():  # released: the next turn is free
        pass
