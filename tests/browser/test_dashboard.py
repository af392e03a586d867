"""The dashboard in Chromium: login, today's numbers and the hour table equal the metrics API's, a live alert
and its acknowledgement, the operator's replay, a developer refused on operator pages, logout; every page passes
axe-core (no serious or critical violation) and fits 1280 px and 390 px."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from models.db import Database
from models.tokens import create_token
from tests.support.browser import check_page, log_in
from tests.support.factories import auth, batch, event
from tests.support.pipeline import wait_for


def _zone_away_from_midnight() -> str:
    """A zone whose offset is not whole hours (local days and the API's UTC hours do not line up), and where the
    last hour's work all falls on today (Kolkata +05:30 and St. John's -03:30 are never both near midnight)."""
    for zone in ("Asia/Kolkata", "America/St_Johns"):
        if datetime.now(ZoneInfo(zone)).hour >= 1:
            return zone
    raise AssertionError("unreachable: the two zones are 9 hours apart")


ZONE = _zone_away_from_midnight()


def new_developer(db: Database, *, timezone: str | None = ZONE, base: str = "") -> tuple[str, str]:
    developer = f"web-{uuid.uuid4().hex[:8]}"
    with db.transaction() as s:
        token = create_token(s, developer)
    if timezone:
        r = requests.put(f"{base}/api/developers/{developer}/settings", json={"timezone": timezone},
                         headers=auth(token), timeout=10)
        assert r.status_code == 200, r.text
    return developer, token


def admin_token(db: Database) -> str:
    with db.transaction() as s:
        return create_token(s, None, admin=True)


def post(base: str, token: str, body: dict[str, Any]) -> str:
    r = requests.post(f"{base}/api/workflow/events/orchestrate", json=body, headers=auth(token), timeout=10)
    assert r.status_code == 202, r.text
    return str(body["batch_id"])


def processed(base: str, token: str, batch_id: str, developer: str | None = None) -> dict[str, Any]:
    params = {"developer_id": developer} if developer else {}

    def done() -> dict[str, Any] | None:
        view = requests.get(f"{base}/api/workflow/batches/{batch_id}", headers=auth(token), params=params,
                            timeout=10).json()
        return view if view.get("status") in ("processed", "processed_with_errors") else None

    return wait_for(done, timeout=60)


def a_day_of_work(developer: str, end: datetime) -> dict[str, Any]:
    """Twenty minutes of edits, saves, builds (one failing), tests and AI inserts ending at `end`."""
    events = []
    for i in range(40):
        at = end - timedelta(seconds=30 * (40 - i))
        events.append(event("file.edit", at, file="src/app.py", language="python", lines_added=i % 4,
                            lines_deleted=i % 2, chars_typed=20))
        if i % 8 == 0:
            events.append(event("file.save", at + timedelta(seconds=5), language="python"))
        if i % 10 == 0:
            events.append(event("build.result", at + timedelta(seconds=7), success=i != 20, duration_ms=900))
            events.append(event("test.result", at + timedelta(seconds=9), passed=12, failed=i // 20))
    events.append(event("ai.suggestion_accepted", end - timedelta(seconds=20), chars_inserted=120))
    return batch(events, developer_id=developer)


def local_today(zone: str = ZONE) -> date:
    return datetime.now(ZoneInfo(zone)).date()


def metrics(base: str, token: str, developer: str, granularity: str, day: date) -> list[dict[str, Any]]:
    r = requests.get(f"{base}/api/developers/{developer}/metrics", headers=auth(token), timeout=10,
                     params={"granularity": granularity, "from": day.isoformat(),
                             "to": (day + timedelta(days=1)).isoformat()})
    assert r.status_code == 200, r.text
    return list(r.json()["buckets"])


def shown(cell: Any) -> float | None:
    raw = cell.get_attribute("data-value")
    return float(raw) if raw != "" else None


def test_todays_numbers_and_the_hour_table_equal_the_metrics_api(live_url, db, page, screenshot_dir):
    developer, token = new_developer(db, base=live_url)
    processed(live_url, token, post(live_url, token, a_day_of_work(developer, datetime.now(UTC))))
    log_in(page, live_url, token)
    today = local_today()
    [api_today] = metrics(live_url, token, developer, "day", today)
    summary = page.locator("#today dd[data-metric]")
    assert summary.count() > 10
    for i in range(summary.count()):
        cell = summary.nth(i)
        assert shown(cell) == api_today[cell.get_attribute("data-metric")], cell.get_attribute("data-metric")
    assert api_today["active_seconds"] > 0 and api_today["build_failures"] == 1

    api_hours = {b["bucket_start"]: b for b in metrics(live_url, token, developer, "hour", today)}
    assert api_hours
    rows = page.locator("#hours-table tbody tr")
    assert rows.count() in (23, 24, 25)
    seen = 0
    for i in range(rows.count()):
        row = rows.nth(i)
        expected = api_hours.get(row.get_attribute("data-bucket"))
        seen += expected is not None
        cells = row.locator("td[data-metric]")
        for j in range(cells.count()):
            name = cells.nth(j).get_attribute("data-metric")
            assert shown(cells.nth(j)) == (expected[name] if expected else (None if name == "ai_share" else 0))
    assert seen == len(api_hours)
    # The table is folded behind its toggle, and opens with it.
    assert page.locator("#hours-table-wrap").is_hidden()
    page.click("button[aria-controls=hours-table-wrap]")
    assert page.locator("#hours-table-wrap").is_visible()
    check_page(page, screenshot_dir, "developer")


def test_an_alert_arrives_live_and_is_acknowledged(live_url, db, page, screenshot_dir):
    developer, token = new_developer(db, base=live_url)
    log_in(page, live_url, token)
    page.wait_for_selector("#alerts[data-stream-state=open]", state="attached")
    assert page.locator("#alerts li").count() == 0
    start = datetime.now(UTC) - timedelta(minutes=4)
    failures = [event("build.result", start + timedelta(seconds=8 * i), success=False) for i in range(25)]
    post(live_url, token, batch(failures, developer_id=developer))
    live = page.locator("#alerts li.live[data-status=open]")
    live.wait_for(timeout=60_000)  # no reload: the alert came over the stream
    assert "excessive_errors" in live.locator(".pattern").inner_text()
    check_page(page, screenshot_dir, "developer-alert")
    live.locator("button", has_text="Acknowledge").click()
    page.wait_for_selector("#alerts li[data-status=acknowledged]")
    alerts = requests.get(f"{live_url}/api/developers/{developer}/alerts", headers=auth(token), timeout=10).json()
    assert [a["status"] for a in alerts["alerts"]] == ["acknowledged"]


def test_the_operator_replays_a_batch_and_sees_it_processed(live_url, db, page, screenshot_dir):
    developer, token = new_developer(db, base=live_url, timezone=None)
    batch_id = post(live_url, token, a_day_of_work(developer, datetime.now(UTC) - timedelta(hours=1)))
    processed(live_url, token, batch_id)
    admin = admin_token(db)
    log_in(page, live_url, admin)
    page.goto(f"{live_url}/operator")
    check_page(page, screenshot_dir, "operator")
    page.fill("#batch", batch_id)
    page.click("button:text-is(\"Find\")")
    page.click("text=Replay…")
    check_page(page, screenshot_dir, "replay-confirm")
    asked = datetime.now(UTC)
    page.click("#confirm-replay")
    page.wait_for_selector(".flash.info")
    assert "replayed" in page.locator(".flash.info").inner_text()

    def replayed() -> bool:
        view = requests.get(f"{live_url}/api/workflow/batches/{batch_id}", headers=auth(admin), timeout=10).json()
        return (view["replay_count"] == 1 and view["status"] == "processed" and view["completed_at"] is not None
                and datetime.fromisoformat(view["completed_at"]) > asked)

    wait_for(replayed, timeout=60)
    page.goto(f"{live_url}/operator?batch={batch_id}")
    assert page.locator("#batch-status").inner_text() == "processed"
    assert page.locator("#batch-replays").inner_text() == "1"


def test_a_developer_token_is_refused_on_operator_pages_and_logout_ends_the_session(live_url, db, page):
    developer, token = new_developer(db, base=live_url, timezone=None)
    log_in(page, live_url, token)
    assert page.locator("nav >> text=Operator").count() == 0
    for path in ("/operator", f"/operator/replay/{developer}/{uuid.uuid4()}"):
        response = page.goto(f"{live_url}{path}")
        assert response is not None and response.status == 403, path
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies] == [True] and token not in cookies[0]["value"]
    assert page.evaluate("() => document.cookie") == ""  # nothing of the session is readable by scripts
    page.goto(f"{live_url}/dashboard")
    page.click("text=Log out")
    page.wait_for_url(f"{live_url}/login")
    page.goto(f"{live_url}/dashboard")
    assert page.url.startswith(f"{live_url}/login")


@pytest.mark.parametrize("width", [1280, 390], indirect=True)
def test_every_page_is_accessible_and_fits(live_url, db, page, width, screenshot_dir: Path):
    developer, token = new_developer(db, base=live_url)
    batch_id = post(live_url, token, a_day_of_work(developer, datetime.now(UTC) - timedelta(minutes=5)))
    processed(live_url, token, batch_id)
    page.goto(f"{live_url}/login")
    check_page(page, screenshot_dir, "login")
    log_in(page, live_url, token)
    for path, name in (("/dashboard", "developer"), ("/batches", "batches"), (f"/batches/{batch_id}", "batch"),
                       (f"/batches/{uuid.uuid4()}", "not-found")):
        page.goto(f"{live_url}{path}")
        check_page(page, screenshot_dir, name)
    page.click("text=Log out")
    log_in(page, live_url, admin_token(db))
    for path, name in (("/dashboard", "pick-developer"), (f"/dashboard?developer={developer}", "admin-developer"),
                       ("/operator", "operator"), (f"/operator?batch={batch_id}", "operator-batch")):
        page.goto(f"{live_url}{path}")
        check_page(page, screenshot_dir, name)


def test_screenshots_for_the_readme(live_url, db, page, screenshot_dir: Path):
    """docs/screenshots/developer.png and operator.png (`make screenshots`): a week of work and an alert."""
    developer, token = new_developer(db, base=live_url, timezone="Europe/Berlin")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for days_ago in range(6, -1, -1):
        for start_hour in (2, 5) if days_ago else (1,):
            body = a_day_of_work(developer, now - timedelta(days=days_ago, hours=start_hour - days_ago % 3))
            processed(live_url, token, post(live_url, token, body))
    failures = [event("build.result", now - timedelta(minutes=4, seconds=-8 * i), success=False) for i in range(25)]
    processed(live_url, token, post(live_url, token, batch(failures, developer_id=developer)))
    log_in(page, live_url, token)
    page.locator("#alerts li").first.wait_for()
    page.screenshot(path=str(screenshot_dir / "developer.png"), full_page=True)
    page.click("text=Log out")
    log_in(page, live_url, admin_token(db))
    page.goto(f"{live_url}/operator")
    page.screenshot(path=str(screenshot_dir / "operator.png"), full_page=True)
