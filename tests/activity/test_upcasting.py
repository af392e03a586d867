from __future__ import annotations

import copy
from typing import Any

import pytest

from activity.catalog import validate_event_payload
from activity.upcasting import upcast


def test_file_edit_lines_changed_becomes_added() -> None:
    payload = {"file": "a.py", "language": "python", "lines_changed": 7, "chars_typed": 30}
    original = copy.deepcopy(payload)
    event_type, new = upcast("file.edit", "1.0", payload)
    assert event_type == "file.edit"
    assert new == {"file": "a.py", "language": "python", "lines_added": 7, "lines_deleted": 0, "chars_typed": 30}
    assert payload == original
    assert validate_event_payload(event_type, "1.1", new) == []


def test_accepted_completion_becomes_suggestion_accepted() -> None:
    payload = {"accepted": True, "chars": 42, "provider": "copilot"}
    original = copy.deepcopy(payload)
    event_type, new = upcast("ai.completion", "1.0", payload)
    assert (event_type, new) == ("ai.suggestion_accepted", {"chars_inserted": 42, "provider": "copilot"})
    assert payload == original
    assert validate_event_payload(event_type, "1.1", new) == []


def test_rejected_completion_becomes_suggestion_shown() -> None:
    event_type, new = upcast("ai.completion", "1.0", {"accepted": False, "chars": 5})
    assert (event_type, new) == ("ai.suggestion_shown", {"chars": 5})
    assert validate_event_payload(event_type, "1.1", new) == []


def test_completion_keeps_unknown_extras() -> None:
    _, new = upcast("ai.completion", "1.0", {"accepted": True, "chars": 5, "model": "x"})
    assert new == {"chars_inserted": 5, "model": "x"}


@pytest.mark.parametrize("version", ["1.1", "1.4"])
def test_current_and_newer_are_unchanged_copies(version: str) -> None:
    payload: dict[str, Any] = {"file": "a", "lines_added": 1, "lines_deleted": 2, "extra": {"nested": [1]}}
    event_type, new = upcast("file.edit", version, payload)
    assert (event_type, new) == ("file.edit", payload)
    assert new is not payload
    new["extra"] = None
    assert payload["extra"] == {"nested": [1]}


def test_other_1_0_events_are_unchanged_copies() -> None:
    payload = {"file": "a.py", "meta": {"k": "v"}}
    event_type, new = upcast("file.save", "1.0", payload)
    assert (event_type, new) == ("file.save", payload)
    assert new is not payload  # a new dict: keys may be set or dropped without touching the stored payload


def test_1_1_lines_changed_is_not_rewritten() -> None:
    # lines_changed means nothing in 1.1; it is an unknown extra there.
    payload = {"file": "a", "lines_added": 1, "lines_deleted": 1, "lines_changed": 9}
    assert upcast("file.edit", "1.1", payload) == ("file.edit", payload)


def test_input_not_mutated_when_keys_change() -> None:
    payload = {"file": "a", "lines_changed": 3, "tags": ["x"]}
    original = copy.deepcopy(payload)
    _, new = upcast("file.edit", "1.0", payload)
    new["file"] = "b"
    del new["tags"]
    assert payload == original


@pytest.mark.parametrize("version", ["2.0", "0.9", "nope"])
def test_unsupported_version_raises(version: str) -> None:
    with pytest.raises(ValueError):
        upcast("file.save", version, {"file": "a"})
