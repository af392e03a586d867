"""The dashboard in a real browser: Debian's Chromium (never a downloaded one) driven by Playwright, against the
Flask app served over loopback HTTP by werkzeug, with the suite's real PostgreSQL, Redis and Celery worker."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def live_url(database_url: str, redis_url: str, celery_app, celery_worker) -> Iterator[str]:
    from app import create_app

    app = create_app({"database_url": database_url, "redis_url": redis_url, "secret_key": "browser-tests-" * 4})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    app.extensions["devpulse.publisher"].wait_idle()
    app.extensions["devpulse.db"].dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/screenshots under `make screenshots` (SCREENSHOTS_DIR); else a temporary directory per run."""
    target = os.environ.get("SCREENSHOTS_DIR")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def width(request: pytest.FixtureRequest) -> int:
    """1280 px unless a test parametrizes it (indirect): the tour of every page runs at 1280 and at 390."""
    return int(getattr(request, "param", 1280))


@pytest.fixture
def page(browser: Any, width: int) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
