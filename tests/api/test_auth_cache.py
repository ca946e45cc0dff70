"""The API-key cache: a revocation counts at once in the revoking process, within the expiry everywhere else."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from services.bootstrap import bootstrap
from services.http.app import create_app
from shared.auth import api_keys, hash_key
from shared.clock import FrozenClock
from tests.builders import T0, service_settings
from tests.support import Api


def _key_id(api: Api, who: str) -> str:
    with api.container.db.read() as conn:
        key_id: str = conn.execute(
            select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(api.keys[who]))
        ).scalar_one()
    return key_id


def test_a_key_revoked_in_this_process_is_refused_at_once(api: Api) -> None:
    assert api.call("GET", "/v1/orders", "issuer").status_code == 200  # checked, and now cached
    with api.container.db.transaction() as conn:
        assert api.container.keys.revoke_in(conn, _key_id(api, "issuer"))
    r = api.call("GET", "/v1/orders", "issuer")  # no time has passed: the cache must not answer
    assert r.status_code == 401 and r.json()["type"] == "/problems/unauthenticated"
    assert api.call("GET", "/v1/orders", "issuer2").status_code == 200  # other keys are untouched


def test_a_revocation_that_rolls_back_revokes_nothing(api: Api) -> None:
    assert api.call("GET", "/v1/orders", "issuer").status_code == 200
    try:
        with api.container.db.transaction() as conn:
            api.container.keys.revoke_in(conn, _key_id(api, "issuer"))
            raise RuntimeError("the revoking transaction fails")
    except RuntimeError:
        pass
    assert api.call("GET", "/v1/orders", "issuer").status_code == 200


def test_another_process_sees_a_revocation_within_the_expiry(api: Api, db_url: str) -> None:
    clock = FrozenClock(T0)
    settings = service_settings(db_url)
    other = bootstrap(settings, clock=clock)  # a second process on the same database, with its own cache
    headers = {"Authorization": f"Bearer {api.keys['issuer']}"}
    try:
        with TestClient(create_app(other, run_workers=False)) as client:
            assert client.get("/v1/orders", headers=headers).status_code == 200
            with api.container.db.transaction() as conn:
                api.container.keys.revoke_in(conn, _key_id(api, "issuer"))
            assert api.call("GET", "/v1/orders", "issuer").status_code == 401  # the revoking process: at once
            # The other process has not heard of it; it trusts its check until the entry expires, and no longer.
            assert client.get("/v1/orders", headers=headers).status_code == 200
            clock.advance(timedelta(seconds=settings.auth_cache_s))
            assert client.get("/v1/orders", headers=headers).status_code == 401
    finally:
        other.close()


def test_without_a_cache_every_request_checks_the_key(db_url: str, api: Api) -> None:
    other = bootstrap(service_settings(db_url).model_copy(update={"auth_cache_s": 0.0}), clock=FrozenClock(T0))
    headers = {"Authorization": f"Bearer {api.keys['issuer']}"}
    try:
        with TestClient(create_app(other, run_workers=False)) as client:
            assert client.get("/v1/orders", headers=headers).status_code == 200
            with api.container.db.transaction() as conn:
                api.container.keys.revoke_in(conn, _key_id(api, "issuer"))
            assert client.get("/v1/orders", headers=headers).status_code == 401
    finally:
        other.close()


def test_a_real_second_api_process_refuses_a_revoked_key_within_auth_cache_s(pg_template: str) -> None:
    """Two OS processes on one PostgreSQL database: `takedown api` on 127.0.0.1, and this one revoking a key."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import drop_pg, fresh_pg_url
    from tests.notifier.receiver import unused_port

    url = fresh_pg_url(pg_template)
    bound_s = 1.0
    settings = service_settings(url).model_copy(update={"auth_cache_s": bound_s})
    here = bootstrap(settings)  # the revoking process, on the system clock as the other one is
    port = unused_port()
    env = {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": url,
        "TAKEDOWN_ENVIRONMENT": "test",
        "TAKEDOWN_EMBEDDED_WORKERS": "false",
        "TAKEDOWN_AUTH_CACHE_S": str(bound_s),
    }
    other = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        plaintext, made = here.keys.create("issuer", actor="test", authority_id="mci")
        headers = {"Authorization": f"Bearer {plaintext}"}
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # wait for the other process to listen
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert other.poll() is None and time.monotonic() < deadline, other.stderr and other.stderr.read()
                time.sleep(0.1)
        assert httpx.get(f"{base}/v1/orders", headers=headers).status_code == 200  # checked there, and cached
        with TestClient(create_app(here, run_workers=False)) as client:
            assert client.get("/v1/orders", headers=headers).status_code == 200
            here.keys.revoke(made.id, "test")
            revoked_at = time.monotonic()
            assert client.get("/v1/orders", headers=headers).status_code == 401  # this process: at once
        # The other process: once its entry has expired, at most auth_cache_s after the revocation committed.
        time.sleep(max(0.0, revoked_at + bound_s + 0.05 - time.monotonic()))
        r = httpx.get(f"{base}/v1/orders", headers=headers)
        assert r.status_code == 401 and r.json()["type"] == "/problems/unauthenticated"
    finally:
        other.terminate()
        other.wait(10)
        here.close()
        drop_pg(url)
