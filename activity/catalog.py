"""The event catalog: which event types exist in which schema version, and
what their payloads must look like.

Validation returns every problem at once (not just the first) so a client
developer can fix a payload in one round trip. Unknown extra payload fields are
always allowed and kept: older servers must accept newer clients that send
more than they know about.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote

CURRENT_SCHEMA_VERSION = "1.1"
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1")

MAX_STRING_LENGTH = 4096
# Counts are summed into 64-bit columns per 15-minute slot. With at most 10**9 per event, a slot would need
# over 9 billion events to overflow (ingest takes a few tens of thousands per second), so no accepted value
# can break aggregation; 10**9 lines, characters, tests or milliseconds is no honest single event.
MAX_COUNT = 10**9
# Epoch seconds (a heartbeat's `time`): JSON numbers beyond 2**53 lose precision in JavaScript clients.
MAX_EPOCH_NUMBER = 2**53
# Limits of the columns that derived rows store these values in (alerts.episode_key, normalized_events.language,
# activity_breakdowns.key): enforced at ingest, so a value ingest accepts never breaks a later job.
MAX_SESSION_ID_LENGTH = 128
MAX_LANGUAGE_LENGTH = 64
MAX_PROJECT_LENGTH = 128
# Payload fields holding a file path or URI: their percent-decoded form is what normalization stores.
PATH_FIELDS = frozenset({"file", "entity"})
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1

FieldKind = Literal["str", "count", "int", "bool", "number"]


@dataclass(frozen=True)
class PayloadError:
    """One reason an event is rejected; `field` is a dotted path such as
    "payload.lines_added" so clients can point at the offending value."""

    field: str
    code: str
    message: str


@dataclass(frozen=True)
class FieldSpec:
    kind: FieldKind
    required: bool = False
    nullable: bool = False
    choices: tuple[str, ...] | None = None
    max_length: int = MAX_STRING_LENGTH


def _req(kind: FieldKind) -> FieldSpec:
    return FieldSpec(kind, required=True)


def _opt(kind: FieldKind) -> FieldSpec:
    return FieldSpec(kind)


_LANGUAGE = FieldSpec("str", max_length=MAX_LANGUAGE_LENGTH)
_DEBUG_ID = FieldSpec("str", required=True, max_length=MAX_SESSION_ID_LENGTH)
_FILE_EVENT = {"file": _req("str"), "language": _LANGUAGE}
_PROVIDER = {"provider": _opt("str")}
_OPT_NULL_STR = FieldSpec("str", nullable=True)

_V11: dict[str, dict[str, FieldSpec]] = {
    "session.start": {"editor": _req("str"), "editor_version": _opt("str")},
    "session.end": {},
    "window.focus": {},
    "window.blur": {},
    "file.open": _FILE_EVENT,
    "file.close": _FILE_EVENT,
    "file.save": _FILE_EVENT,
    "file.edit": {
        **_FILE_EVENT,
        "lines_added": _req("count"),
        "lines_deleted": _req("count"),
        "chars_typed": _opt("count"),
    },
    "diagnostics.snapshot": {"errors": _req("count"), "warnings": _req("count"), "file": _opt("str")},
    "build.result": {"success": _req("bool"), "duration_ms": _opt("count")},
    "test.result": {"passed": _req("count"), "failed": _req("count"), "duration_ms": _opt("count")},
    "debug.start": {"debug_session_id": _DEBUG_ID, "debug_type": _opt("str")},
    "debug.stop": {"debug_session_id": _DEBUG_ID},
    "debug.breakpoint_hit": {"debug_session_id": _DEBUG_ID},
    "terminal.command": {"exit_code": _req("int"), "duration_ms": _opt("count")},
    "ai.suggestion_shown": {"chars": _req("count"), **_PROVIDER},
    "ai.suggestion_accepted": {"chars_inserted": _req("count"), **_PROVIDER},
    "ai.chat_insert": {"chars_inserted": _req("count"), **_PROVIDER},
    "git.commit": {"files_changed": _opt("count"), "lines_added": _opt("count"), "lines_deleted": _opt("count")},
    # WakaTime's heartbeat shape, so existing WakaTime plugins can report too;
    # those plugins send null for unknown optional strings.
    "editor.heartbeat": {
        "entity": _req("str"),
        "type": FieldSpec("str", nullable=True, choices=("file", "domain", "app")),
        "category": _OPT_NULL_STR,
        "time": _req("number"),
        "project": FieldSpec("str", nullable=True, max_length=MAX_PROJECT_LENGTH),
        "branch": _OPT_NULL_STR,
        "language": FieldSpec("str", nullable=True, max_length=MAX_LANGUAGE_LENGTH),
        "lines": _opt("count"),
        "lineno": _opt("count"),
        "cursorpos": _opt("count"),
        "is_write": _opt("bool"),
        "line_additions": _opt("count"),
        "line_deletions": _opt("count"),
        "user_agent": _OPT_NULL_STR,
    },
}

_V10: dict[str, dict[str, FieldSpec]] = {
    name: spec for name, spec in _V11.items() if not name.startswith("ai.") and name != "editor.heartbeat"
}
_V10["file.edit"] = {**_FILE_EVENT, "lines_changed": _req("count"), "chars_typed": _opt("count")}
_V10["ai.completion"] = {"accepted": _req("bool"), "chars": _req("count"), **_PROVIDER}

_CATALOG: dict[str, dict[str, dict[str, FieldSpec]]] = {"1.0": _V10, "1.1": _V11}
_EVENT_TYPES: dict[str, frozenset[str]] = {v: frozenset(types) for v, types in _CATALOG.items()}
# Every type some version of the catalog knows: the jobs process stored events of these types only. An event of
# any other type was stored under a newer minor (`stored_unprocessed`) and waits until the catalog learns it.
KNOWN_EVENT_TYPES: frozenset[str] = frozenset().union(*_EVENT_TYPES.values())
# What an event type a newer minor adds must look like to be stored unprocessed ("namespace.name").
_TYPE_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")

# Leading zeros are refused so "1.01" cannot masquerade as "1.1"; ASCII digits
# only because \d would also accept e.g. Arabic-Indic digits.
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


@lru_cache(maxsize=256)
def resolve_schema_version(version: str) -> str | None:
    """The catalog version to validate against, or None if unsupported.

    A newer 1.x minor is validated as 1.1: minors only ever add optional
    fields or event types, and unknown fields are allowed anyway.
    """
    if not isinstance(version, str):
        return None
    match = _VERSION_RE.fullmatch(version)
    if match is None or match.group(1) != "1":
        return None
    return "1.0" if match.group(2) == "0" else "1.1"


def is_newer_minor(version: str) -> bool:
    """A 1.x minor newer than the catalog's own: it may add event types this server does not know yet."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    current_minor = int(CURRENT_SCHEMA_VERSION.split(".")[1])
    return match is not None and match.group(1) == "1" and int(match.group(2)) > current_minor


def stored_unprocessed(event_type: str, schema_version: str) -> bool:
    """Whether an event the catalog rejects as an unknown type is kept instead, stored raw and not processed
    until the catalog learns the type: a type no version knows (not a removed one such as 1.0's
    ai.completion), shaped like a type name, under a newer 1.x minor. Unknown types under a known minor stay
    rejected (`unknown_event_type`)."""
    return (isinstance(event_type, str) and event_type not in KNOWN_EVENT_TYPES
            and _TYPE_NAME_RE.fullmatch(event_type) is not None and is_newer_minor(schema_version))


def event_types(version: str) -> frozenset[str]:
    """Event types of a resolved version ("1.0" or "1.1"); KeyError otherwise."""
    return _EVENT_TYPES[version]


def field_specs(event_type: str, version: str) -> dict[str, FieldSpec]:
    """The payload fields of one event type in a resolved version (a copy)."""
    return dict(_CATALOG[version][event_type])


def _shorten(value: str, limit: int = 64) -> str:
    # Rejected values are echoed back in messages; never echo megabytes.
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python, but `true` is not a number in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(name: str, spec: FieldSpec, value: Any) -> PayloadError | None:
    path = f"payload.{name}"
    if value is None and spec.nullable:
        return None
    if spec.kind == "str":
        if not isinstance(value, str):
            expected = "a string or null" if spec.nullable else "a string"
            return PayloadError(path, "invalid_type", f"{path} must be {expected}")
        if len(value) > spec.max_length:
            return PayloadError(path, "out_of_range", f"{path} must be at most {spec.max_length} characters long")
        if name in PATH_FIELDS and value[:7].lower() == "file://" and "\x00" in unquote(value):
            return PayloadError(path, "invalid_value", f"{path} percent-decodes to a NUL character")
        if spec.choices is not None and value not in spec.choices:
            return PayloadError(
                path,
                "invalid_value",
                f"{path} must be one of {', '.join(spec.choices)} (got {_shorten(value)})",
            )
        return None
    if spec.kind == "count":
        if not _is_int(value):
            return PayloadError(path, "invalid_type", f"{path} must be an integer >= 0")
        if value < 0:
            return PayloadError(path, "out_of_range", f"{path} must be an integer >= 0")
        if value > MAX_COUNT:
            return PayloadError(path, "out_of_range", f"{path} must be at most {MAX_COUNT}")
        return None
    if spec.kind == "int":
        if not _is_int(value):
            return PayloadError(path, "invalid_type", f"{path} must be an integer")
        if not MIN_INT64 <= value <= MAX_INT64:
            return PayloadError(
                path, "out_of_range", f"{path} must be a signed 64-bit integer ({MIN_INT64}..{MAX_INT64})"
            )
        return None
    if spec.kind == "bool":
        if not isinstance(value, bool):
            return PayloadError(path, "invalid_type", f"{path} must be true or false")
        return None
    # "number": epoch seconds, which WakaTime sends as a float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return PayloadError(path, "invalid_type", f"{path} must be a number (epoch seconds)")
    if isinstance(value, float) and not math.isfinite(value):
        return PayloadError(path, "invalid_value", f"{path} must be a finite number")
    if abs(value) > MAX_EPOCH_NUMBER:
        return PayloadError(path, "out_of_range",
                            f"{path} must be between -{MAX_EPOCH_NUMBER} and {MAX_EPOCH_NUMBER}")
    return None


def validate_event_payload(event_type: str, schema_version: str, payload: dict[str, Any]) -> list[PayloadError]:
    """Every reason the event is invalid; an empty list means it is valid.

    `schema_version` is the raw string the client sent; it is resolved here so
    callers cannot forget to.
    """
    resolved = resolve_schema_version(schema_version)
    if resolved is None:
        shown = _shorten(schema_version) if isinstance(schema_version, str) else repr(type(schema_version))
        return [
            PayloadError(
                "schema_version",
                "unsupported_schema_version",
                f"schema_version {shown} is not supported; supported versions are "
                f"{', '.join(SUPPORTED_SCHEMA_VERSIONS)} (newer 1.x minors are accepted as 1.1)",
            )
        ]
    if not isinstance(event_type, str):
        return [PayloadError("type", "invalid_type", "type must be a string")]
    fields = _CATALOG[resolved].get(event_type)
    if fields is None:
        hint = ""
        other = "1.0" if resolved == "1.1" else "1.1"
        if event_type in _EVENT_TYPES[other]:
            hint = f" (it exists only in schema {other})"
        return [
            PayloadError(
                "type",
                "unknown_event_type",
                f"type {_shorten(event_type)} is not a known event type in schema {resolved}{hint}",
            )
        ]
    if not isinstance(payload, dict):
        return [PayloadError("payload", "invalid_type", "payload must be a JSON object")]

    errors: list[PayloadError] = []
    for name, spec in fields.items():
        if name not in payload:
            if spec.required:
                errors.append(
                    PayloadError(
                        f"payload.{name}", "missing_field", f"payload.{name} is required for {event_type} events"
                    )
                )
            continue
        error = _check_field(name, spec, payload[name])
        if error is not None:
            errors.append(error)
    return errors
