"""Plain-words advice for each danger pattern and severity.

The text states the measured figures first (so the developer sees why the alert
fired) and then one concrete action; the action grows firmer with severity, so
every (pattern, severity) pair has its own text. Figures come from the
detection's `details`; a missing figure degrades the wording, never raises,
because advice must not be the reason an alert cannot be stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Details = Mapping[str, Any]


def _number(details: Details, key: str) -> float | None:
    value = details.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _duration(minutes: float | None) -> str:
    """'5 h 12 min', '2 h', '45 min' (whole minutes, rounded down)."""
    if minutes is None:
        return "a long time"
    hours, rest = divmod(max(int(minutes), 0), 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"


def _figure(details: Details, key: str, default: str = "?") -> str:
    value = _number(details, key)
    if value is None:
        return default
    return f"{value:g}" if isinstance(value, float) else str(value)


def _errors_fact(d: Details) -> str:
    return (
        f"You hit {_figure(d, 'peak_error_count', 'many')} errors (failed builds, tests, commands or diagnostics) "
        f"within {_figure(d, 'excessive_errors_window_minutes', 'a few')} minutes."
    )


def _debug_fact(d: Details) -> str:
    state = "has been running for" if d.get("still_open") else "lasted"
    return f"Your debug session {state} {_duration(_number(d, 'duration_minutes'))}."


def _ai_fact(d: Details) -> str:
    share = _number(d, "peak_ai_share")
    percent = f"{round(share * 100)}%" if share is not None else "Most"
    return (
        f"{percent} of the {_figure(d, 'peak_total_chars', 'many')} characters you added within "
        f"{_figure(d, 'ai_window_minutes', '60')} minutes came from AI "
        f"({_figure(d, 'peak_ai_chars')} AI-inserted vs {_figure(d, 'peak_typed_chars')} typed)."
    )


def _no_break_fact(d: Details) -> str:
    return (
        f"You have worked {_duration(_number(d, 'duration_minutes'))} without a break longer than "
        f"{_figure(d, 'no_break_gap_minutes', '10')} minutes."
    )


def _late_night_fact(d: Details) -> str:
    start = int(_number(d, "late_night_start_hour") or 0)
    end = int(_number(d, "late_night_end_hour") or 5)
    night = f" on the night of {d['night_date']}" if isinstance(d.get("night_date"), str) else ""
    return (
        f"You were active {_duration(_number(d, 'active_minutes'))} between {start:02d}:00 and {end:02d}:00 "
        f"local time{night}."
    )


_FACTS: dict[str, Callable[[Details], str]] = {
    "excessive_errors": _errors_fact,
    "extended_debugging": _debug_fact,
    "high_ai_dependency": _ai_fact,
    "no_break": _no_break_fact,
    "late_night_work": _late_night_fact,
}

_ACTIONS: dict[str, dict[str, str]] = {
    "excessive_errors": {
        "medium": "Stop re-running for a moment: read the first error in full and fix that one before trying again.",
        "high": (
            "You are in a retry loop. Stop re-running: write down what you expect and what actually happens, "
            "go back to the last state that worked, and take a 5-minute break before the next attempt."
        ),
        "critical": (
            "Together with other high warning signs this is a red flag. Stop now for 15 minutes, then walk a "
            "teammate through the failure before touching the code again."
        ),
    },
    "extended_debugging": {
        "medium": (
            "Time-box it: write down your current hypothesis and what would disprove it, and give yourself "
            "20 more minutes before changing approach."
        ),
        "high": (
            "Stop stepping through code. Explain the problem to a teammate (or write it up as if you would), "
            "then take a 10-minute break before continuing."
        ),
        "critical": (
            "Combined with other high warning signs, this needs a hard stop: end the session now, take "
            "15 minutes away from the screen, and ask for a second pair of eyes when you return."
        ),
    },
    "high_ai_dependency": {
        "medium": "Read every suggestion before accepting it, and write the next function yourself.",
        "high": (
            "Turn off inline suggestions for the next 30 minutes and review the AI-inserted code line by line "
            "before you commit it."
        ),
        "critical": (
            "With other high warning signs at the same time, accepted code is unlikely to be reviewed properly: "
            "stop, take a break, and do not commit AI-inserted code until you have reread it rested."
        ),
    },
    "no_break": {
        "medium": "Within the next 30 minutes take at least 5 minutes off: stand up and stretch.",
        "high": "Stop now for at least 15 minutes: stand up, drink water, look away from the screen.",
        "critical": (
            "Other warning signs are high as well. Stop now for at least 30 minutes: leave the desk, eat or "
            "drink something, and only then decide whether to continue today."
        ),
    },
    "late_night_work": {
        "low": "Wrap up: note where you stopped so you can pick it up tomorrow, and go to sleep.",
        "medium": (
            "Stop for tonight and start later tomorrow. If a deadline is forcing night work, raise it with "
            "your lead today."
        ),
        "critical": (
            "Night work together with other high warning signs is when serious mistakes happen: stop now, "
            "commit nothing more tonight, and talk to your lead tomorrow."
        ),
    },
}


def recommendation(pattern: str, severity: str, details: Mapping[str, Any]) -> str:
    """A concrete action in plain words for one detection."""
    fact = _FACTS.get(pattern)
    actions = _ACTIONS.get(pattern)
    if fact is None or actions is None:
        return (
            f"Unusual activity detected ({pattern}, {severity}). Take a 5-minute break and review what you were "
            "doing before continuing."
        )
    # An unknown severity gets the mildest advice of the pattern rather than an error.
    action = actions.get(severity) or next(iter(actions.values()))
    return f"{fact(details)} {action}"
