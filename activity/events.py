"""Plain value types shared by the pure rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NormalizedEvent:
    """One stored event after upcasting to the current schema (1.1).

    `ts` is the skew-corrected timestamp in UTC (timezone-aware);
    `utc_offset_minutes` is the offset the client wrote in its own timestamp,
    which is the developer's local time zone at that moment.
    """

    event_id: str
    type: str
    ts: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    utc_offset_minutes: int = 0
    session_id: str | None = None
