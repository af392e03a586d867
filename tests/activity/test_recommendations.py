"""Advice text: concrete, uses the measured figures, distinct per (pattern, severity)."""

from __future__ import annotations

from typing import Any

import pytest

from activity.recommendations import recommendation

DETAILS: dict[str, dict[str, Any]] = {
    "excessive_errors": {"peak_error_count": 42, "excessive_errors_window_minutes": 15},
    "extended_debugging": {"duration_minutes": 135.5, "still_open": True},
    "high_ai_dependency": {
        "peak_ai_share": 0.9312,
        "peak_ai_chars": 4200,
        "peak_typed_chars": 310,
        "peak_total_chars": 4510,
        "ai_window_minutes": 60,
    },
    "no_break": {"duration_minutes": 312.0, "no_break_gap_minutes": 10},
    "late_night_work": {
        "active_minutes": 47.0,
        "night_date": "2024-05-07",
        "late_night_start_hour": 0,
        "late_night_end_hour": 5,
    },
}
LEVELS = {
    "excessive_errors": ("medium", "high", "critical"),
    "extended_debugging": ("medium", "high", "critical"),
    "high_ai_dependency": ("medium", "high", "critical"),
    "no_break": ("medium", "high", "critical"),
    "late_night_work": ("low", "medium"),
}
FIGURES = {
    "excessive_errors": ["42 errors", "15 minutes"],
    "extended_debugging": ["2 h 15 min"],
    "high_ai_dependency": ["93%", "4510", "4200", "310"],
    "no_break": ["5 h 12 min", "10 minutes"],
    "late_night_work": ["47 min", "00:00", "05:00", "2024-05-07"],
}


def test_no_break_high_reads_as_specified() -> None:
    assert recommendation("no_break", "high", DETAILS["no_break"]) == (
        "You have worked 5 h 12 min without a break longer than 10 minutes. "
        "Stop now for at least 15 minutes: stand up, drink water, look away from the screen."
    )


def test_every_pattern_and_severity_has_its_own_text() -> None:
    texts = [recommendation(p, s, DETAILS[p]) for p, levels in LEVELS.items() for s in levels]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("pattern", sorted(LEVELS))
def test_advice_quotes_the_measured_figures(pattern: str) -> None:
    for severity in LEVELS[pattern]:
        text = recommendation(pattern, severity, DETAILS[pattern])
        for figure in FIGURES[pattern]:
            assert figure in text, (severity, figure, text)


def test_missing_figures_and_unknown_input_never_raise() -> None:
    assert "a long time" in recommendation("no_break", "high", {})
    assert "ghost_pattern" in recommendation("ghost_pattern", "high", {})
    assert recommendation("no_break", "weird", {}) == recommendation("no_break", "medium", {})
