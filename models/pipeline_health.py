"""What the operator view reads from PostgreSQL: batches per status, processing lag, quarantine, admin alerts,
and the developers an admin can pick on the dashboard. Each read is bounded (recent rows through an index)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import AdminAlert, ApiToken, Batch, QuarantinedEvent


@dataclass(frozen=True)
class Lag:
    """Seconds from a batch's receipt to its completion, over the batches completed in the window."""

    batches: int
    p50_seconds: float | None
    p95_seconds: float | None


def batches_per_status(session: Session, since: datetime) -> dict[str, int]:
    """Batches whose status changed at or after `since`, per status (ix_batches_status_updated)."""
    rows = session.execute(select(Batch.status, func.count()).where(Batch.updated_at >= since)
                           .group_by(Batch.status).order_by(Batch.status))
    return {str(status): int(count) for status, count in rows}


def processing_lag(session: Session, since: datetime) -> Lag:
    lag = func.extract("epoch", Batch.completed_at - Batch.received_at)
    row = session.execute(select(
        func.count(), func.percentile_cont(0.5).within_group(lag), func.percentile_cont(0.95).within_group(lag),
    ).where(Batch.updated_at >= since, Batch.completed_at >= since)).one()
    return Lag(int(row[0]), float(row[1]) if row[1] is not None else None,
               float(row[2]) if row[2] is not None else None)


def quarantined_count(session: Session) -> int:
    """Events still quarantined (not yet released by `requeue --quarantined`)."""
    return int(session.execute(select(func.count()).select_from(QuarantinedEvent)
                               .where(QuarantinedEvent.released_at.is_(None))).scalar_one())


def recent_admin_alerts(session: Session, limit: int = 20) -> list[AdminAlert]:
    return list(session.execute(select(AdminAlert).order_by(AdminAlert.created_at.desc()).limit(limit)).scalars())


def known_developers(session: Session, limit: int = 200) -> list[str]:
    """Developers with a token or a recent batch, for an admin's developer picker."""
    recent = datetime.now().astimezone() - timedelta(days=30)
    with_tokens = select(ApiToken.developer_id).where(ApiToken.developer_id.is_not(None),
                                                      ApiToken.revoked_at.is_(None))
    with_batches = select(Batch.developer_id).where(Batch.updated_at >= recent)
    union = with_tokens.union(with_batches).subquery()
    rows: list[str] = list(session.execute(select(union.c[0]).order_by(union.c[0]).limit(limit)).scalars())
    return rows
