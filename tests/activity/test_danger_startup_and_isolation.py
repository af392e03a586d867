"""activity.danger: thresholds from DANGER_* overrides (checked at start-up) and rule isolation in detect()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activity import danger
from activity.danger import DangerThresholds, detect
from activity.events import NormalizedEvent


def test_overrides_apply_with_the_fields_types() -> None:
    th = DangerThresholds.from_overrides({"excessive_errors_high": 50.0, "ai_high": 0.95})
    assert th.excessive_errors_high == 50 and isinstance(th.excessive_errors_high, int)
    assert th.ai_high == 0.95


@pytest.mark.parametrize(("overrides", "message"), [
    ({"excessive_errors_hgih": 5.0}, "DANGER_EXCESSIVE_ERRORS_HGIH is not a danger threshold"),
    ({"excessive_errors_high": 5.5}, "DANGER_EXCESSIVE_ERRORS_HIGH must be a whole number"),
    ({"ai_high": -1.0}, "DANGER_AI_HIGH must be >= 0"),
    ({"ai_window_minutes": 0.0}, "sliding windows must be longer than zero"),
    ({"late_night_start_hour": 5.0}, "late-night hours"),
])
def test_bad_overrides_fail_with_the_variable_named(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DangerThresholds.from_overrides(overrides)


def test_the_web_app_refuses_to_start_with_a_bad_danger_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import create_app

    monkeypatch.setenv("DANGER_NO_BREAK_GAP_MINUTES", "-3")
    with pytest.raises(ValueError, match="DANGER_NO_BREAK_GAP_MINUTES must be >= 0"):
        create_app()


def test_a_failing_rule_is_reported_and_the_others_still_detect(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(events: object, th: object, tz: object) -> list[danger.Detection]:
        raise RuntimeError("boom")

    monkeypatch.setitem(danger.RULES, "late_night_work", broken)
    start = datetime(2024, 5, 6, 9, tzinfo=UTC)
    errors = [NormalizedEvent(f"e{i}", "build.result", start + timedelta(seconds=10 * i), {"success": False})
              for i in range(25)]
    found, failed = detect(errors)
    assert failed == {"late_night_work": "RuntimeError: boom"}
    assert [d.pattern for d in found] == ["excessive_errors"]
