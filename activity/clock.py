"""Client clocks are wrong; these rules decide when an event really happened
and whether that time is believable.

The client stamps each event (`client_ts`) and the batch (`sent_at`) with its
own clock, so their difference is exact even when the clock is off by hours;
anchoring that difference on the server's `received_at` removes the skew.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from activity.catalog import PayloadError

MAX_FUTURE_SKEW = timedelta(minutes=5)

# fromisoformat alone would also take naive times, bare dates, week dates and
# "+0100"; RFC 3339 requires a full date-time with an explicit offset.
_RFC3339_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_MAX_RFC3339_LENGTH = 40


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def correct_timestamp(client_ts: datetime, sent_at: datetime, received_at: datetime) -> datetime:
    """The event time on the server's clock, in UTC:
    received_at - (sent_at - client_ts).

    Raises ValueError for naive inputs or when the result is outside the
    datetime range (only possible with absurd client clocks).
    """
    _require_aware("client_ts", client_ts)
    _require_aware("sent_at", sent_at)
    _require_aware("received_at", received_at)
    try:
        return (received_at - (sent_at - client_ts)).astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("corrected timestamp is outside the representable range") from exc


def check_event_time(corrected: datetime, received_at: datetime, max_age_days: int) -> PayloadError | None:
    """A rejection for an implausible corrected time, or None if acceptable.

    Exactly at either limit is accepted.
    """
    _require_aware("corrected", corrected)
    _require_aware("received_at", received_at)
    # Compare differences rather than shifted datetimes: shifting can overflow
    # the datetime range near year 1 or 9999, a difference cannot.
    if corrected - received_at > MAX_FUTURE_SKEW:
        return PayloadError(
            "timestamp",
            "timestamp_in_future",
            "timestamp is more than 5 minutes in the future after clock-skew correction",
        )
    if received_at - corrected > timedelta(days=max_age_days):
        return PayloadError(
            "timestamp",
            "timestamp_too_old",
            f"timestamp is more than {max_age_days} days old after clock-skew correction",
        )
    return None


def parse_rfc3339(value: str) -> datetime:
    """Parse a strict RFC 3339 date-time with an explicit offset ("Z" or
    ±HH:MM); fractional seconds beyond microseconds are truncated.

    Raises ValueError with a readable message for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, not {type(value).__name__}")
    match = _RFC3339_RE.fullmatch(value) if len(value) <= _MAX_RFC3339_LENGTH else None
    if match is None:
        shown = value if len(value) <= _MAX_RFC3339_LENGTH else value[:_MAX_RFC3339_LENGTH] + "..."
        raise ValueError(
            f"timestamp {shown!r} is not an RFC 3339 date-time with an explicit offset "
            "(expected e.g. 2024-05-01T12:30:00.123Z or 2024-05-01T14:30:00+02:00)"
        )
    offset_text = match["offset"]
    if offset_text in ("Z", "z"):
        tz = UTC
    else:
        hours, minutes = int(offset_text[1:3]), int(offset_text[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"timestamp {value!r} has an invalid UTC offset {offset_text}")
        sign = -1 if offset_text[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    fraction = match["fraction"] or ""
    microsecond = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            microsecond,
            tzinfo=tz,
        )
    except ValueError as exc:
        # Leap seconds (":60") land here too; they are rare enough to reject.
        raise ValueError(f"timestamp {value!r} is not a valid date-time: {exc}") from exc


def utc_offset_minutes(dt: datetime) -> int:
    """The UTC offset of an aware datetime in whole minutes (east positive)."""
    _require_aware("dt", dt)
    offset = dt.utcoffset()
    assert offset is not None
    # Truncate toward zero: sub-minute offsets exist only in historic zones.
    return int(offset.total_seconds() / 60)
