"""Limits of stored and derived columns, enforced per event by the catalog (poison-proof by construction)."""

from __future__ import annotations

import pytest

from activity.catalog import (
    MAX_COUNT,
    MAX_EPOCH_NUMBER,
    MAX_LANGUAGE_LENGTH,
    MAX_PROJECT_LENGTH,
    MAX_SESSION_ID_LENGTH,
    validate_event_payload,
)


def errors(event_type: str, payload: dict[str, object], version: str = "1.1") -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in validate_event_payload(event_type, version, payload)]


@pytest.mark.parametrize("event_type", ["debug.start", "debug.stop", "debug.breakpoint_hit"])
def test_debug_session_ids_fit_the_alert_episode_key(event_type: str) -> None:
    assert errors(event_type, {"debug_session_id": "x" * MAX_SESSION_ID_LENGTH}) == []
    assert errors(event_type, {"debug_session_id": "x" * (MAX_SESSION_ID_LENGTH + 1)}) == [
        ("payload.debug_session_id", "out_of_range")]


def test_languages_fit_the_normalized_column() -> None:
    ok = {"file": "a.py", "language": "l" * MAX_LANGUAGE_LENGTH}
    assert errors("file.save", ok) == []
    assert errors("file.save", {**ok, "language": "l" * (MAX_LANGUAGE_LENGTH + 1)}) == [
        ("payload.language", "out_of_range")]
    beat = {"entity": "/a.py", "time": 1.0, "language": "l" * (MAX_LANGUAGE_LENGTH + 1)}
    assert errors("editor.heartbeat", beat) == [("payload.language", "out_of_range")]


def test_heartbeat_projects_fit_the_breakdown_key() -> None:
    beat = {"entity": "/a.py", "time": 1.0, "project": "p" * MAX_PROJECT_LENGTH}
    assert errors("editor.heartbeat", beat) == []
    assert errors("editor.heartbeat", {**beat, "project": "p" * (MAX_PROJECT_LENGTH + 1)}) == [
        ("payload.project", "out_of_range")]


@pytest.mark.parametrize("path", ["file:///a%00b.py", "FILE://host/x%00", "file:///%00"])
def test_file_uris_that_decode_to_nul_are_rejected(path: str) -> None:
    assert errors("file.save", {"file": path}) == [("payload.file", "invalid_value")]
    assert errors("editor.heartbeat", {"entity": path, "time": 1.0}) == [("payload.entity", "invalid_value")]


def test_a_literal_percent_in_a_plain_path_is_fine() -> None:
    assert errors("file.save", {"file": "/tmp/100%00.txt"}) == []


def test_summed_counts_are_capped_so_no_slot_can_overflow() -> None:
    ok = {"passed": MAX_COUNT, "failed": 0}
    assert errors("test.result", ok) == []
    assert errors("test.result", {**ok, "passed": MAX_COUNT + 1}) == [("payload.passed", "out_of_range")]
    # 2**53 passed tests per event was accepted before, and 1,025 of them in an hour overflowed a BIGINT sum.
    assert errors("test.result", {**ok, "passed": 2**53}) == [("payload.passed", "out_of_range")]


def test_epoch_seconds_keep_their_own_range() -> None:
    assert errors("editor.heartbeat", {"entity": "/a", "time": float(MAX_EPOCH_NUMBER)}) == []
    assert errors("editor.heartbeat", {"entity": "/a", "time": MAX_EPOCH_NUMBER * 2}) == [
        ("payload.time", "out_of_range")]
