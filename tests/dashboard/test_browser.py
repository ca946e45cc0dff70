"""The dashboard in real headless Chromium (Debian's package, driven by Playwright) against a real uvicorn server.

Fails, never skips, when the browser cannot start. Screenshots land in test-artifacts/dashboard/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.conftest import fresh_sqlite_url
from tests.support import Api, make_api, serve
from tests.transparency.seed import seed

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def seeded_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[Api]:
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    with make_api(fresh_sqlite_url(sqlite_template, tmp_path)) as api:
        yield api


def sign_in(page: Page, base: str, key: str) -> None:
    page.goto(f"{base}/dashboard")
    page.fill("#key-input", key)
    page.click("#key-form button")
    page.wait_for_selector("body[data-loaded='all']")
    assert key not in page.url
    assert page.evaluate("Object.values(sessionStorage)") == [key]


def text(page: Page, selector: str) -> str:
    return (page.text_content(selector) or "").strip()


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:g}%"  # as JavaScript prints a number


def test_the_dashboard_shows_the_apis_figures_filters_and_a_timeline_in_chromium(seeded_api: Api) -> None:
    api = seeded_api
    seeded = seed(api)
    api.container.ledger.checkpoint()  # so the timeline can show a receipt with an inclusion proof
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = api.call("GET", "/v1/sla/summary", "auditor").json()["groups"][0]
    by_platform = {
        g["key"]: g for g in api.call("GET", "/v1/sla/summary?group_by=platform", "auditor").json()["groups"]
    }
    urgent = [
        r["order_id"]
        for status in ("at_risk", "breached")
        for r in api.call("GET", "/v1/sla/orders", "auditor", params={"sla_status": status}).json()["items"]
    ]
    assert summary["counts"]["at_risk"] and summary["counts"]["breached"] and len(by_platform) == 3

    with serve(api.client.app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            # Every console error and failed request counts (a favicon 404 was one).
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            sign_in(page, base, api.keys["auditor"])

            # The tiles equal /v1/sla/summary.
            assert text(page, ".tile[data-status=total] .n") == str(summary["total"])
            assert text(page, ".tile[data-status=percent_met] .n") == pct(summary["percent_met"])
            for status, n in summary["counts"].items():
                assert text(page, f".tile[data-status={status}] .n") == str(n), status
            # The platform table equals /v1/sla/summary?group_by=platform.
            assert page.locator("#platforms tbody tr").count() == 3
            for key, g in by_platform.items():
                row = f"#platforms tr[data-platform-id='{key}']"
                assert text(page, f"{row} td[data-col=orders]") == str(g["total"])
                assert text(page, f"{row} td[data-col=percent_met]") == pct(g["percent_met"])
                assert text(page, f"{row} td[data-col=breached]") == str(g["counts"]["breached"])
            # The at-risk and breached orders equal /v1/sla/orders, soonest deadline first, breached ones negative.
            shown = page.eval_on_selector_all("#urgent tbody tr", "rows => rows.map(r => r.dataset.orderId)")
            assert sorted(shown) == sorted(urgent)
            remaining = page.eval_on_selector_all(
                "#urgent tbody tr", "rows => rows.map(r => Number(r.dataset.remaining))"
            )
            assert remaining == sorted(remaining) and remaining[0] < 0 < remaining[-1]
            assert text(page, "#urgent tbody tr:first-child .remaining").startswith("-")
            # It counts down live.
            before = text(page, "#urgent tbody tr:last-child .remaining")
            page.wait_for_function(
                "before => document.querySelector('#urgent tbody tr:last-child .remaining').textContent !== before",
                arg=before,
            )
            # Both charts are drawn (inline SVG): time to answer and items per day by outcome.
            assert page.locator("#chart-answers svg rect").count() >= 1
            assert page.locator("#chart-daily svg rect[data-key=removed]").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "desktop.png"), full_page=True)

            # A filter changes the table: platform A alone.
            page.select_option("#f-platform", api.platform_a)
            page.wait_for_selector(f"body[data-loaded='platform={api.platform_a}']")
            assert page.eval_on_selector_all("#platforms tbody tr", "rows => rows.map(r => r.dataset.platformId)") == [
                api.platform_a
            ]
            assert text(page, ".tile[data-status=total] .n") == str(by_platform[api.platform_a]["total"])
            page.select_option("#f-category", "fraud")
            page.wait_for_selector("body[data-loaded*='category=fraud']")
            assert text(page, "#platforms tbody td.empty") == "No orders for this filter"
            page.select_option("#f-category", "")
            page.select_option("#f-platform", "")
            page.wait_for_selector("body[data-loaded='all']")
            assert errors == [], errors  # loaded, filtered and reloaded without one console error

            # One click opens an order's timeline: its events and its ledger receipt.
            first = shown[0]
            page.click(f"#urgent tr[data-order-id='{first}']")
            page.wait_for_selector("#tl-events li[data-type='order.issued']")
            assert text(page, "#tl-id") == first
            events = api.call("GET", f"/v1/orders/{first}/events", "auditor").json()
            assert page.locator("#tl-events li").count() == len(events)
            page.wait_for_selector("#tl-receipt dl")
            assert "Root hash" in text(page, "#tl-receipt")
            assert str(events[0]["position"]) in text(page, "#tl-receipt")
            page.screenshot(path=str(ARTIFACTS / "desktop-timeline.png"), full_page=True)
            # The timeline asks for the attempt log, which is an admin's: an auditor's 403 is expected and shown.
            denied = [e for e in errors if "/v1/deliveries?order_id=" in e or "status of 403" in e]
            assert len(denied) == len(errors) == 2, errors

            # A reload keeps the key (session storage); a phone's width needs no sideways scrolling.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.set_default_timeout(10_000)
            sign_in(phone, base, api.keys["auditor"])
            phone.reload()
            phone.wait_for_selector("body[data-loaded='all']")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            assert text(phone, ".tile[data-status=total] .n") == str(summary["total"])
            phone.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
        finally:
            browser.close()
    assert seeded.ids
