"""/docs in Chromium: Swagger UI renders the document from this server, a pasted token authorizes "Try it out",
and the page has no serious or critical axe-core violation."""

from __future__ import annotations

from pathlib import Path

from tests.browser.test_dashboard import new_developer
from tests.support.browser import accessibility_violations


def test_docs_explorer_tries_a_request_with_a_pasted_token(live_url, db, page, screenshot_dir: Path):
    developer, token = new_developer(db, base=live_url, timezone="Europe/Berlin")
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live_url) else outside.append(r.url))
    page.goto(f"{live_url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert page.locator("#operations-default-get_api_developers__developer_id__settings").count() == 1

    page.click("button.authorize")
    page.fill(".auth-container input[type=text]", token)
    page.click(".auth-btn-wrapper button.authorize")
    page.click("button.btn-done")

    op = page.locator("#operations-default-get_api_developers__developer_id__settings")
    op.locator(".opblock-summary").click()
    op.locator("button.try-out__btn").click()
    op.locator("input[placeholder='developer_id']").fill(developer)
    op.locator("button.execute").click()
    response = op.locator(".live-responses-table .response .response-col_status").first
    response.wait_for()
    assert response.inner_text().strip() == "200"
    assert "Europe/Berlin" in op.locator(".live-responses-table .response").first.inner_text()
    page.screenshot(path=str(screenshot_dir / "api-docs.png"), full_page=False)
    assert outside == []  # no CDN: every file comes from this server
    violations = accessibility_violations(page)
    assert violations == [], violations
