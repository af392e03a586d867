from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activity.clock import (
    MAX_FUTURE_SKEW,
    check_event_time,
    correct_timestamp,
    parse_rfc3339,
    utc_offset_minutes,
)

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_correction_with_concrete_numbers() -> None:
    # The client clock runs 2 hours 3 seconds fast; the event happened 90 s
    # (client time) before the batch was sent.
    client_ts = datetime(2024, 5, 1, 14, 0, 3, tzinfo=UTC)
    sent_at = datetime(2024, 5, 1, 14, 1, 33, tzinfo=UTC)
    received_at = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
    corrected = correct_timestamp(client_ts, sent_at, received_at)
    assert corrected == datetime(2024, 5, 1, 11, 58, 30, 500000, tzinfo=UTC)
    assert corrected.tzinfo is UTC


def test_correction_across_offsets_returns_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    client_ts = datetime(2024, 5, 1, 13, 59, 0, tzinfo=plus2)  # 11:59 UTC
    sent_at = datetime(2024, 5, 1, 14, 0, 0, tzinfo=plus2)  # 12:00 UTC
    received_at = datetime(2024, 5, 1, 7, 0, 10, tzinfo=timezone(timedelta(hours=-5)))  # 12:00:10 UTC
    corrected = correct_timestamp(client_ts, sent_at, received_at)
    assert corrected == datetime(2024, 5, 1, 11, 59, 10, tzinfo=UTC)
    assert corrected.utcoffset() == timedelta(0)
    assert corrected.hour == 11


def test_correction_rejects_naive() -> None:
    with pytest.raises(ValueError):
        correct_timestamp(datetime(2024, 1, 1), RECEIVED, RECEIVED)


def test_correction_overflow_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        correct_timestamp(datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC), RECEIVED)


@given(
    skew=st.integers(min_value=-(10**9), max_value=10**9),
    delay=st.integers(min_value=0, max_value=10**8),
)
@settings(max_examples=50)
def test_correction_is_independent_of_client_skew(skew: int, delay: int) -> None:
    true_event = RECEIVED - timedelta(microseconds=delay)
    client_ts = true_event + timedelta(microseconds=skew)
    sent_at = RECEIVED + timedelta(microseconds=skew)
    assert correct_timestamp(client_ts, sent_at, RECEIVED) == true_event


def test_future_boundary() -> None:
    assert timedelta(minutes=5) == MAX_FUTURE_SKEW
    assert check_event_time(RECEIVED + timedelta(minutes=5), RECEIVED, 30) is None
    error = check_event_time(RECEIVED + timedelta(minutes=5, microseconds=1), RECEIVED, 30)
    assert error is not None
    assert (error.field, error.code) == ("timestamp", "timestamp_in_future")


def test_age_boundary() -> None:
    assert check_event_time(RECEIVED - timedelta(days=30), RECEIVED, 30) is None
    error = check_event_time(RECEIVED - timedelta(days=30, microseconds=1), RECEIVED, 30)
    assert error is not None
    assert (error.field, error.code) == ("timestamp", "timestamp_too_old")
    assert "30 days" in error.message


def test_check_event_time_extremes_do_not_overflow() -> None:
    # Year 1 is ~739,000 days before RECEIVED: shifting RECEIVED back by the
    # max age would leave the datetime range, comparing differences does not.
    assert check_event_time(datetime(1, 1, 1, tzinfo=UTC), RECEIVED, 10**6) is None
    assert check_event_time(datetime(1, 1, 1, tzinfo=UTC), RECEIVED, 10**5) is not None
    assert check_event_time(datetime(9999, 12, 31, tzinfo=UTC), RECEIVED, 30) is not None
    far = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert check_event_time(far, far, 30) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01t12:30:00z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00.123Z", datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T12:30:00.123456789Z", datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T07:00:00-05:30", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_valid(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None


def test_parse_rfc3339_keeps_offset() -> None:
    assert utc_offset_minutes(parse_rfc3339("2024-05-01T07:00:00-05:30")) == -330
    assert utc_offset_minutes(parse_rfc3339("2024-05-01T14:30:00+02:00")) == 120
    assert utc_offset_minutes(parse_rfc3339("2024-05-01T14:30:00Z")) == 0


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:30:00",  # naive
        "2024-05-01",  # date only
        "2024-05-01T12:30Z",  # no seconds
        "2024-05-01 12:30:00Z",  # space separator
        "2024-05-01T12:30:00+0200",  # offset without colon
        "2024-05-01T12:30:00+02",
        "20240501T123000Z",  # basic format
        "2024-W18-3T12:00:00Z",
        "2024-13-01T12:30:00Z",  # month 13
        "2024-02-30T12:30:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:30:60Z",  # leap second
        "2024-05-01T12:30:00+24:00",
        "2024-05-01T12:30:00.Z",
        "2024-05-01T12:30:00Z\n",
        "\u0662\u0660\u0662\u0664-05-01T12:30:00Z",  # non-ASCII digits
        "garbage",
        "",
        "2024-05-01T12:30:00Z" + "0" * 10_000,
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_rfc3339(text)


def test_parse_rfc3339_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(1714560000)


def test_utc_offset_minutes() -> None:
    assert utc_offset_minutes(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=45)))) == 345
    assert utc_offset_minutes(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-9)))) == -540
    with pytest.raises(ValueError):
        utc_offset_minutes(datetime(2024, 1, 1))
