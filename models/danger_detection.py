"""Danger-detection job (rules and alerts come with the danger-detection issue)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from models.settings import Settings
from models.tables import Batch


def detect_for_batch(session: Session, batch: Batch, ctx: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {"alerts": 0}
