"""core/settings.py: environment parsing, with errors that name the variable."""

from __future__ import annotations

import pytest

from core.settings import Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.max_events_per_batch == 1000
    assert settings.danger == {}


def test_values_are_parsed_by_their_declared_type() -> None:
    settings = Settings.from_env({"MAX_EVENTS_PER_BATCH": "10", "DB_RETRY_BUDGET_MS": "5", "LOG_JSON": "off",
                                  "RATE_LIMIT_PER_SECOND": "2.5", "ALERT_WEBHOOK_URL": "http://x",
                                  "ALERT_WEBHOOK_SECRET": "s"})
    assert (settings.max_events_per_batch, settings.log_json, settings.rate_limit_per_second) == (10, False, 2.5)
    assert settings.alert_webhook_url == "http://x"


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MAX_EVENTS_PER_BATCH='ten' is not an integer"):
        Settings.from_env({"MAX_EVENTS_PER_BATCH": "ten"})


def test_danger_variables_are_collected_as_numbers() -> None:
    settings = Settings.from_env({"DANGER_EXCESSIVE_ERRORS_HIGH": "50", "DANGER_AI_HIGH": "0.95", "DANGER_X": ""})
    assert settings.danger == {"excessive_errors_high": 50.0, "ai_high": 0.95}
    with pytest.raises(SettingsError, match="DANGER_AI_HIGH='lots' is not a number"):
        Settings.from_env({"DANGER_AI_HIGH": "lots"})


def test_libpq_urls_are_accepted() -> None:
    assert Settings.from_env({"DATABASE_URL": "postgres://u@h/db"}).sqlalchemy_url == "postgresql+psycopg2://u@h/db"


def test_a_webhook_url_without_a_secret_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="ALERT_WEBHOOK_URL is set but ALERT_WEBHOOK_SECRET is empty"):
        Settings.from_env({"ALERT_WEBHOOK_URL": "https://hooks.example/devpulse"})
    with pytest.raises(SettingsError, match="ALERT_WEBHOOK_SECRET is empty"):
        Settings.from_env({"ALERT_WEBHOOK_URL": "https://hooks.example/devpulse", "ALERT_WEBHOOK_SECRET": ""})
    assert Settings.from_env({}).alert_webhook_url == ""  # no webhook: no secret needed


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x", "hooks.example/x", "http://"])
def test_webhook_urls_are_http_or_https_with_a_host(url: str) -> None:
    with pytest.raises(SettingsError, match="must be an http:// or https:// URL"):
        Settings.from_env({"ALERT_WEBHOOK_URL": url, "ALERT_WEBHOOK_SECRET": "s"})
    with pytest.raises(SettingsError, match="ADMIN_ALERT_WEBHOOK_URL"):
        Settings.from_env({"ADMIN_ALERT_WEBHOOK_URL": url})


def test_the_workers_refuse_to_start_with_an_unsigned_webhook() -> None:
    """The real start-up path: importing the Celery app builds the settings from the environment."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook", "ALERT_WEBHOOK_SECRET": ""}
    run = subprocess.run([sys.executable, "-c", "import tasks"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "ALERT_WEBHOOK_SECRET is empty" in run.stderr
