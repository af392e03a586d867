"""Per-developer settings (time zone, idle timeout), with the defaults when none are stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from models.tables import DeveloperSettings

DEFAULT_TIMEZONE = "UTC"
DEFAULT_IDLE_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class DeveloperPreferences:
    timezone: str = DEFAULT_TIMEZONE
    idle_timeout_seconds: int = DEFAULT_IDLE_TIMEOUT_SECONDS
    # False while the developer never chose a zone: the late-night rule then uses each event's own offset.
    timezone_set: bool = False


def preferences(session: Session, developer_id: str) -> DeveloperPreferences:
    row = session.get(DeveloperSettings, developer_id)
    if row is None:
        return DeveloperPreferences()
    return DeveloperPreferences(timezone=row.timezone, idle_timeout_seconds=row.idle_timeout_seconds,
                                timezone_set=True)
