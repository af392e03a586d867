"""next_fire: cron in the trigger's local time, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from automation.schedule import next_fire

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekdays_at_nine_local() -> None:
    friday_noon = utc(2026, 11, 27, 12)
    assert next_fire("0 9 * * 1-5", "Europe/Berlin", friday_noon) == utc(2026, 11, 30, 8)  # Monday 09:00 CET
    assert next_fire("0 9 * * 1-5", "Europe/Berlin", utc(2026, 7, 1, 6)) == utc(2026, 7, 1, 7)  # 09:00 CEST


def test_a_skipped_local_time_fires_just_after_the_jump() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist that night
    assert next_fire("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert next_fire("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)


def test_a_repeated_local_time_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25: 02:00-03:00 happens twice in Berlin (CEST, then CET)
    first = next_fire("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_fire("30 2 * * *", "Europe/Berlin", first) == utc(2026, 10, 26, 1, 30)
    fires = [utc(2026, 10, 24, 23, 50)]
    while fires[-1] < utc(2026, 10, 25, 2, 15):
        fires.append(next_fire("*/15 * * * *", "Europe/Berlin", fires[-1]))  # type: ignore[arg-type]
    # 02:00-02:45 CEST (00:00-00:45 UTC) fire; their second pass in CET (01:00-01:45 UTC) does not
    assert fires[1:] == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30),
                         utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 15)]


def test_a_cron_that_never_matches_has_no_next_time() -> None:
    assert next_fire("0 0 30 2 *", "UTC", utc(2026, 1, 1)) is None


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(["0 9 * * 1-5", "*/15 * * * *", "30 2 * * *", "0 0 1 * *"]),
       st.sampled_from(["Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe"]))
def test_next_fire_is_later_and_no_instant_is_skipped(after: datetime, cron: str, zone: str) -> None:
    fire = next_fire(cron, zone, after)
    assert fire is not None and fire > after
    # nothing fires in between: the instant just before has the same next time
    assert next_fire(cron, zone, fire - timedelta(microseconds=1)) == fire
