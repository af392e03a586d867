from __future__ import annotations

from typing import Any

import pytest

from activity.catalog import (
    CURRENT_SCHEMA_VERSION,
    MAX_COUNT,
    MAX_STRING_LENGTH,
    SUPPORTED_SCHEMA_VERSIONS,
    PayloadError,
    event_types,
    resolve_schema_version,
    validate_event_payload,
)

# A minimal valid 1.1 payload for every event type, and its required fields.
VALID_11: dict[str, tuple[dict[str, Any], set[str]]] = {
    "session.start": ({"editor": "vscode"}, {"editor"}),
    "session.end": ({}, set()),
    "window.focus": ({}, set()),
    "window.blur": ({}, set()),
    "file.open": ({"file": "a.py"}, {"file"}),
    "file.close": ({"file": "a.py"}, {"file"}),
    "file.save": ({"file": "a.py"}, {"file"}),
    "file.edit": ({"file": "a.py", "lines_added": 1, "lines_deleted": 0}, {"file", "lines_added", "lines_deleted"}),
    "diagnostics.snapshot": ({"errors": 0, "warnings": 2}, {"errors", "warnings"}),
    "build.result": ({"success": True}, {"success"}),
    "test.result": ({"passed": 3, "failed": 0}, {"passed", "failed"}),
    "debug.start": ({"debug_session_id": "d1"}, {"debug_session_id"}),
    "debug.stop": ({"debug_session_id": "d1"}, {"debug_session_id"}),
    "debug.breakpoint_hit": ({"debug_session_id": "d1"}, {"debug_session_id"}),
    "terminal.command": ({"exit_code": -1}, {"exit_code"}),
    "ai.suggestion_shown": ({"chars": 10}, {"chars"}),
    "ai.suggestion_accepted": ({"chars_inserted": 10}, {"chars_inserted"}),
    "ai.chat_insert": ({"chars_inserted": 10}, {"chars_inserted"}),
    "git.commit": ({}, set()),
    "editor.heartbeat": ({"entity": "/a.py", "time": 1714560000.25}, {"entity", "time"}),
}


def codes(errors: list[PayloadError]) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in errors]


def test_versions_constants() -> None:
    assert CURRENT_SCHEMA_VERSION == "1.1"
    assert SUPPORTED_SCHEMA_VERSIONS == ("1.0", "1.1")


def test_catalog_covers_exactly_the_specified_types() -> None:
    assert event_types("1.1") == frozenset(VALID_11)
    expected_10 = (set(VALID_11) - {t for t in VALID_11 if t.startswith("ai.")} - {"editor.heartbeat"}) | {
        "ai.completion"
    }
    assert event_types("1.0") == frozenset(expected_10)


@pytest.mark.parametrize("event_type", sorted(VALID_11))
def test_minimal_valid_payloads(event_type: str) -> None:
    payload, _ = VALID_11[event_type]
    assert validate_event_payload(event_type, "1.1", payload) == []


@pytest.mark.parametrize("event_type", sorted(VALID_11))
def test_each_required_field_is_required(event_type: str) -> None:
    payload, required = VALID_11[event_type]
    for name in required:
        broken = {k: v for k, v in payload.items() if k != name}
        errors = validate_event_payload(event_type, "1.1", broken)
        assert codes(errors) == [(f"payload.{name}", "missing_field")]
        assert errors[0].message == f"payload.{name} is required for {event_type} events"


def test_all_errors_are_reported_at_once() -> None:
    errors = validate_event_payload("file.edit", "1.1", {"lines_added": -1})
    assert sorted(codes(errors)) == [
        ("payload.file", "missing_field"),
        ("payload.lines_added", "out_of_range"),
        ("payload.lines_deleted", "missing_field"),
    ]


@pytest.mark.parametrize("bad", [True, False, "3", 3.0, 2.5, None, [1], {"n": 1}])
def test_counts_must_be_real_integers(bad: Any) -> None:
    errors = validate_event_payload("diagnostics.snapshot", "1.1", {"errors": bad, "warnings": 0})
    assert codes(errors) == [("payload.errors", "invalid_type")]
    assert errors[0].message == "payload.errors must be an integer >= 0"


def test_negative_count_is_out_of_range() -> None:
    errors = validate_event_payload("test.result", "1.1", {"passed": 1, "failed": -2})
    assert codes(errors) == [("payload.failed", "out_of_range")]
    assert "payload.failed" in errors[0].message and ">= 0" in errors[0].message


def test_count_magnitude_cap() -> None:
    ok = {"file": "a", "lines_added": MAX_COUNT, "lines_deleted": 0}
    assert validate_event_payload("file.edit", "1.1", ok) == []
    too_big = {"file": "a", "lines_added": MAX_COUNT + 1, "lines_deleted": 10**400}
    assert codes(validate_event_payload("file.edit", "1.1", too_big)) == [
        ("payload.lines_added", "out_of_range"),
        ("payload.lines_deleted", "out_of_range"),
    ]


@pytest.mark.parametrize("code", [0, 1, -1, 255, -(2**63), 2**63 - 1])
def test_exit_code_accepts_any_int64(code: int) -> None:
    assert validate_event_payload("terminal.command", "1.1", {"exit_code": code}) == []


@pytest.mark.parametrize(
    ("value", "code"),
    [(True, "invalid_type"), ("0", "invalid_type"), (1.0, "invalid_type"), (2**63, "out_of_range"),
     (-(2**63) - 1, "out_of_range")],
)  # fmt: skip
def test_exit_code_rejections(value: Any, code: str) -> None:
    assert codes(validate_event_payload("terminal.command", "1.1", {"exit_code": value})) == [
        ("payload.exit_code", code)
    ]


@pytest.mark.parametrize("bad", [1, 0, "true", None])
def test_bools_must_be_real_bools(bad: Any) -> None:
    errors = validate_event_payload("build.result", "1.1", {"success": bad})
    assert codes(errors) == [("payload.success", "invalid_type")]
    assert errors[0].message == "payload.success must be true or false"


@pytest.mark.parametrize("bad", [1, True, None, ["a.py"]])
def test_strings_must_be_strings(bad: Any) -> None:
    errors = validate_event_payload("file.open", "1.1", {"file": bad})
    assert codes(errors) == [("payload.file", "invalid_type")]


def test_optional_fields_are_type_checked_when_present() -> None:
    payload = {"file": "a", "lines_added": 1, "lines_deleted": 1, "chars_typed": "9", "language": 7}
    assert sorted(codes(validate_event_payload("file.edit", "1.1", payload))) == [
        ("payload.chars_typed", "invalid_type"),
        ("payload.language", "invalid_type"),
    ]
    assert codes(validate_event_payload("build.result", "1.1", {"success": True, "duration_ms": -5})) == [
        ("payload.duration_ms", "out_of_range")
    ]


def test_string_length_cap() -> None:
    assert validate_event_payload("file.open", "1.1", {"file": "x" * MAX_STRING_LENGTH}) == []
    errors = validate_event_payload("file.open", "1.1", {"file": "x" * (MAX_STRING_LENGTH + 1)})
    assert codes(errors) == [("payload.file", "out_of_range")]


def test_heartbeat_fields() -> None:
    full = {
        "entity": "/src/a.py", "type": "file", "category": "debugging", "time": 1714560000,
        "project": None, "branch": None, "language": None, "lines": 10, "lineno": 3, "cursorpos": 40,
        "is_write": False, "line_additions": 1, "line_deletions": 0, "user_agent": None,
    }  # fmt: skip
    assert validate_event_payload("editor.heartbeat", "1.1", full) == []
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "type": "folder"})) == [
        ("payload.type", "invalid_value")
    ]
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "time": True})) == [
        ("payload.time", "invalid_type")
    ]
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "time": "1714560000"})) == [
        ("payload.time", "invalid_type")
    ]
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "time": float("nan")})) == [
        ("payload.time", "invalid_value")
    ]
    # Only optional strings are nullable, not required ones or counts.
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "entity": None})) == [
        ("payload.entity", "invalid_type")
    ]
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "lineno": None})) == [
        ("payload.lineno", "invalid_type")
    ]
    assert codes(validate_event_payload("editor.heartbeat", "1.1", {**full, "is_write": 1})) == [
        ("payload.is_write", "invalid_type")
    ]


def test_null_not_allowed_for_non_heartbeat_optional_strings() -> None:
    errors = validate_event_payload("file.open", "1.1", {"file": "a", "language": None})
    assert codes(errors) == [("payload.language", "invalid_type")]


def test_unknown_extra_fields_are_allowed() -> None:
    assert validate_event_payload("file.save", "1.1", {"file": "a", "whatever": {"x": [1]}}) == []
    assert validate_event_payload("session.end", "1.0", {"reason": "quit"}) == []


def test_file_edit_differs_between_1_0_and_1_1() -> None:
    v10 = {"file": "a.py", "lines_changed": 4}
    assert validate_event_payload("file.edit", "1.0", v10) == []
    assert sorted(codes(validate_event_payload("file.edit", "1.1", v10))) == [
        ("payload.lines_added", "missing_field"),
        ("payload.lines_deleted", "missing_field"),
    ]
    v11 = {"file": "a.py", "lines_added": 1, "lines_deleted": 2}
    assert codes(validate_event_payload("file.edit", "1.0", v11)) == [("payload.lines_changed", "missing_field")]
    assert codes(validate_event_payload("file.edit", "1.0", {"file": "a", "lines_changed": -1})) == [
        ("payload.lines_changed", "out_of_range")
    ]


def test_ai_completion_only_in_1_0() -> None:
    assert validate_event_payload("ai.completion", "1.0", {"accepted": True, "chars": 12}) == []
    assert codes(validate_event_payload("ai.completion", "1.0", {"accepted": 1, "chars": 12})) == [
        ("payload.accepted", "invalid_type")
    ]
    errors = validate_event_payload("ai.completion", "1.1", {"accepted": True, "chars": 12})
    assert codes(errors) == [("type", "unknown_event_type")]
    assert "ai.completion" in errors[0].message
    for newer in ("ai.suggestion_shown", "ai.suggestion_accepted", "ai.chat_insert", "editor.heartbeat"):
        assert codes(validate_event_payload(newer, "1.0", {})) == [("type", "unknown_event_type")]


@pytest.mark.parametrize(
    ("raw", "resolved"),
    [("1.0", "1.0"), ("1.1", "1.1"), ("1.2", "1.1"), ("1.5", "1.1"), ("1.17", "1.1"),
     ("2.0", None), ("0.9", None), ("1", None), ("1.", None), ("v1.1", None), ("1.1.0", None),
     (" 1.1", None), ("1.01", None), ("01.1", None), ("", None), ("1.x", None), ("\u0661.\u0661", None)],
)  # fmt: skip
def test_resolve_schema_version(raw: str, resolved: str | None) -> None:
    assert resolve_schema_version(raw) == resolved


def test_newer_minor_validated_as_1_1_and_unknown_fields_kept() -> None:
    payload = {"file": "a.py", "lines_added": 1, "lines_deleted": 0, "new_in_1_5": "yes"}
    assert validate_event_payload("file.edit", "1.5", payload) == []
    assert payload["new_in_1_5"] == "yes"  # validation never strips fields
    assert codes(validate_event_payload("file.edit", "1.5", {"file": "a", "lines_changed": 1})) == [
        ("payload.lines_added", "missing_field"),
        ("payload.lines_deleted", "missing_field"),
    ]


@pytest.mark.parametrize("version", ["2.0", "0.9", "garbage", "", "1.1-beta"])
def test_unsupported_versions_rejected(version: str) -> None:
    errors = validate_event_payload("file.save", version, {"file": "a"})
    assert codes(errors) == [("schema_version", "unsupported_schema_version")]
    assert "schema_version" in errors[0].message


def test_unknown_type_rejected() -> None:
    errors = validate_event_payload("file.rename", "1.1", {"file": "a"})
    assert codes(errors) == [("type", "unknown_event_type")]
    assert "file.rename" in errors[0].message


def test_huge_values_are_not_echoed_in_messages() -> None:
    errors = validate_event_payload("x" * 100_000, "1.1", {})
    assert len(errors[0].message) < 300


def test_non_object_payload() -> None:
    assert codes(validate_event_payload("file.save", "1.1", ["a"])) == [("payload", "invalid_type")]
