"""The schema: every table of devpulse as SQLAlchemy 2 typed models.

The schema itself changes only through Alembic (alembic/versions); these
classes describe it for queries. Columns are NOT NULL unless a comment says why.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class BatchStatus(StrEnum):
    """A batch's lifecycle: persisted -> dispatched -> processing -> one of the terminal states.

    The single source of the status strings: the CHECK constraint, the OpenAPI enum and the queries use it.
    """

    PERSISTED = "persisted"
    DISPATCHED = "dispatched"
    PROCESSING = "processing"
    PROCESSED = "processed"
    PROCESSED_WITH_ERRORS = "processed_with_errors"
    FAILED = "failed"

    @classmethod
    def terminal(cls) -> tuple[BatchStatus, ...]:
        return (cls.PROCESSED, cls.PROCESSED_WITH_ERRORS, cls.FAILED)

    @classmethod
    def in_flight(cls) -> tuple[BatchStatus, ...]:
        """Handed to the broker and not finished: what the sweeper watches."""
        return (cls.DISPATCHED, cls.PROCESSING)


def _in_list(values: tuple[str, ...]) -> str:
    return ",".join(f"'{v}'" for v in values)


def _now() -> Any:
    return mapped_column(server_default=func.now())


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # Only the SHA-256 of the token is stored; the token itself is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # NULL for admin tokens that belong to no developer.
    developer_id: Mapped[str | None] = mapped_column(String(128))
    is_admin: Mapped[bool] = mapped_column(server_default=text("false"))
    # May post events for any developer (an importer); no other token may, admin or not (app/auth.py).
    ingest_for_all: Mapped[bool] = mapped_column(server_default=text("false"))
    label: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[datetime] = _now()
    # NULL: never expires / not revoked.
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # NULL until first used; refreshed at most every few minutes (models/tokens.py).
    last_used_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("is_admin OR developer_id IS NOT NULL OR ingest_for_all", name="developer_or_admin"),
    )


class Batch(Base):
    """A batch id is unique per developer: another developer's batch may carry the same id."""

    __tablename__ = "batches"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    correlation_id: Mapped[str] = mapped_column(String(128))
    # SHA-256 of the canonical request content: a resend with the same id must match it.
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), server_default=BatchStatus.PERSISTED.value)
    source: Mapped[str] = mapped_column(String(32), server_default="native")
    received_at: Mapped[datetime]
    sent_at: Mapped[datetime]
    client: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    received: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    # NULL when no event of the batch was accepted (all duplicates).
    first_ts: Mapped[datetime | None]
    last_ts: Mapped[datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer, server_default="0")
    dispatch_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # Lifecycle timestamps, NULL until the step happens.
    dispatched_at: Mapped[datetime | None]
    processing_started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()
    # What the first answer said beyond the count columns ({"status", "errors", "duplicate_event_ids",
    # "stored_unprocessed"}): a resend of the batch is answered with it. NULL for batches stored before 0011.
    first_reply: Mapped[dict[str, Any] | None]

    __table_args__ = (
        CheckConstraint(f"status IN ({_in_list(tuple(BatchStatus))})", name="status"),
        CheckConstraint("received = accepted + duplicates + rejected", name="counts_add_up"),
        Index("ix_batches_developer_received", "developer_id", "received_at"),
        Index("ix_batches_status_updated", "status", "updated_at"),
        # Admins and operators look a batch up by its id alone (several developers may own it).
        Index("ix_batches_batch_id", "batch_id"),
    )


class RawEvent(Base):
    """Append-only: a trigger (see the initial migration) forbids UPDATE and DELETE."""

    __tablename__ = "raw_events"

    # The primary key (developer_id, event_id) is what makes persistence exactly-once per developer under
    # concurrency; another developer's event may carry the same id.
    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[str | None] = mapped_column(String(128))
    client_ts: Mapped[datetime]
    client_utc_offset_minutes: Mapped[int] = mapped_column(Integer)
    corrected_ts: Mapped[datetime]
    received_at: Mapped[datetime]
    # The event object exactly as the client sent it (payload included).
    raw: Mapped[dict[str, Any]]

    __table_args__ = (
        ForeignKeyConstraint(["developer_id", "batch_id"], ["batches.developer_id", "batches.batch_id"]),
        Index("ix_raw_events_developer_ts", "developer_id", "corrected_ts"),
        Index("ix_raw_events_batch_seq", "batch_id", "seq"),
        Index("ix_raw_events_debug_marks", "developer_id", "corrected_ts",
              postgresql_where=text("type IN ('debug.start', 'debug.stop')")),
    )


class Outbox(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    developer_id: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(128))
    is_replay: Mapped[bool] = mapped_column(server_default=text("false"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    dispatched_at: Mapped[datetime | None]
    # The W3C traceparent of the request (or command) that wrote the record, so that its publish, by the web or
    # later by the relay, continues that trace (core/tracing.py). NULL: tracing was off, or there was no trace.
    traceparent: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        ForeignKeyConstraint(["developer_id", "batch_id"], ["batches.developer_id", "batches.batch_id"]),
        CheckConstraint("status IN ('pending','dispatched','dead_letter')", name="status"),
        Index("ix_outbox_pending", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_outbox_dead_letter", "id", postgresql_where=text("status = 'dead_letter'")),
        Index("ix_outbox_batch", "batch_id"),
    )


class BatchJob(Base):
    """Per-job state of a batch's pipeline run (one row per batch and job)."""

    __tablename__ = "batch_jobs"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | running | ok | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    task_id: Mapped[str | None] = mapped_column(String(64))
    is_replay: Mapped[bool] = mapped_column(server_default=text("false"))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The batch whose run of this job also did this batch's work (models/coalescing.py); NULL when it ran itself.
    covered_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # The batch's dispatch attempt (batches.dispatch_count) this row's run belongs to: an older attempt's late
    # finish or callback changes nothing (models/batch_lifecycle.py).
    dispatch_attempt: Mapped[int] = mapped_column(Integer, server_default="0")
    # While running, renewed by the worker's heartbeat; a lease that ran out means the run was lost. NULL otherwise.
    lease_expires_at: Mapped[datetime | None]
    # Celery's retry count of the run that last started (a retry is no lost run; a redelivery is).
    retries: Mapped[int] = mapped_column(Integer, server_default="0")
    # Runs in a row that started and never finished (their worker died), capped by JOB_MAX_LOST_RUNS.
    lost_runs: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        ForeignKeyConstraint(["developer_id", "batch_id"], ["batches.developer_id", "batches.batch_id"]),
    )


class NormalizedEvent(Base):
    __tablename__ = "normalized_events"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    source_schema_version: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime]
    utc_offset_minutes: Mapped[int] = mapped_column(Integer)
    session_id: Mapped[str | None] = mapped_column(String(128))
    # NULL for events that concern no file / no language.
    language: Mapped[str | None] = mapped_column(String(64))
    file_path: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    normalized_at: Mapped[datetime] = _now()

    __table_args__ = (
        ForeignKeyConstraint(["developer_id", "event_id"], ["raw_events.developer_id", "raw_events.event_id"]),
        Index("ix_normalized_events_developer_ts", "developer_id", "ts"),
    )


class MetricSlot(Base):
    """One developer's metrics in one 15-minute UTC slot (activity.metrics.SlotMetrics); derived, recomputed."""

    __tablename__ = "metric_slots"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    active_us: Mapped[int] = mapped_column(BigInteger)
    edits: Mapped[int] = mapped_column(BigInteger)
    lines_added: Mapped[int] = mapped_column(BigInteger)
    lines_deleted: Mapped[int] = mapped_column(BigInteger)
    saves: Mapped[int] = mapped_column(BigInteger)
    error_events: Mapped[int] = mapped_column(BigInteger)
    builds: Mapped[int] = mapped_column(BigInteger)
    build_failures: Mapped[int] = mapped_column(BigInteger)
    tests_passed: Mapped[int] = mapped_column(BigInteger)
    tests_failed: Mapped[int] = mapped_column(BigInteger)
    debug_us: Mapped[int] = mapped_column(BigInteger)
    typed_chars: Mapped[int] = mapped_column(BigInteger)
    ai_chars_inserted: Mapped[int] = mapped_column(BigInteger)
    commits: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("active_us BETWEEN 0 AND 900000000", name="active_within_slot"),
        CheckConstraint("debug_us BETWEEN 0 AND 900000000", name="debug_within_slot"),
    )


class ActivityBreakdown(Base):
    """Active time of one slot per language or per project (activity.metrics.SlotBreakdown)."""

    __tablename__ = "activity_breakdowns"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(primary_key=True)
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    active_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("dimension IN ('language','project')", name="dimension"),)


class DeveloperSettings(Base):
    """Per-developer settings; a row exists once set or once a recompute is pending (defaults otherwise)."""

    __tablename__ = "developer_settings"

    developer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    idle_timeout_seconds: Mapped[int] = mapped_column(Integer, server_default="300")
    updated_at: Mapped[datetime] = _now()
    # A pending background recompute over [recompute_from, recompute_until), done up to recompute_done_until.
    recompute_from: Mapped[datetime | None]
    recompute_until: Mapped[datetime | None]
    recompute_done_until: Mapped[datetime | None]
    recompute_requested_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("idle_timeout_seconds BETWEEN 60 AND 3600", name="idle"),)


class Alert(Base):
    __tablename__ = "alerts"

    alert_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    developer_id: Mapped[str] = mapped_column(String(128))
    pattern: Mapped[str] = mapped_column(String(64))
    # Identifies the episode so one alert exists per (developer, pattern, window).
    episode_key: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    details: Mapped[dict[str, Any]]
    recommendation: Mapped[str] = mapped_column(Text)
    # The batch whose processing found or last changed the alert; NULL when a background recompute did.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(128))
    detected_at: Mapped[datetime]
    updated_at: Mapped[datetime] = _now()
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    acknowledged_at: Mapped[datetime | None]
    stale: Mapped[bool] = mapped_column(server_default=text("false"))
    deliveries: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    # Bumped by every change: receivers deduplicate notifications by (alert_id, version).
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # The transaction that last announced the alert (new or escalated, not stale): the alert stream's order
    # (models/alert_stream.py). NULL: never announced (stale, or stored before revision 0010).
    announced_txid: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("severity IN ('low','medium','high','critical')", name="severity"),
        CheckConstraint("status IN ('open','acknowledged','withdrawn')", name="status"),
        Index("uq_alerts_episode", "developer_id", "pattern", "episode_key", unique=True),
        Index("ix_alerts_developer_detected", "developer_id", "detected_at"),
        Index("ix_alerts_announced", "developer_id", "announced_txid", "alert_id",
              postgresql_where=text("announced_txid IS NOT NULL")),
    )


class LoginLink(Base):
    """A one-time dashboard login link (`make run` prints one): single use, short-lived; only hashes are kept."""

    __tablename__ = "login_links"

    # SHA-256 of the link's secret (the secret is only in the printed URL).
    link_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # SHA-256 of the token the link logs in with, as api_tokens keeps it.
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]
    # NULL until redeemed; a redeemed link never works again.
    used_at: Mapped[datetime | None]


class AlertNotification(Base):
    """The outbox of developer alerts: written in the transaction that stores the alert changes it announces (one
    record per detection run, i.e. per developer and batch), then delivered from here: each alert published on
    the developer's pub/sub channel (the SSE stream), and all of them in one signed webhook request."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    developer_id: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(128))
    # The alert documents as of this change (models.alerts.alert_document): what every delivery carries.
    alerts: Mapped[list[Any]]
    alert_count: Mapped[int] = mapped_column(Integer)
    # New alerts of the run left out by the per-developer rate cap (stored and listed, not pushed).
    withheld: Mapped[int] = mapped_column(Integer, server_default="0")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    # NULL until the alerts were handed to Redis pub/sub.
    published_at: Mapped[datetime | None]
    # NULL until the webhook accepted them (stays NULL when no webhook is configured).
    webhook_delivered_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    # The full error of the last failed attempt: admin view only (developers see a generic reason).
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        ForeignKeyConstraint(["developer_id", "batch_id"], ["batches.developer_id", "batches.batch_id"]),
        CheckConstraint("status IN ('pending','delivered','dead_letter')", name="status"),
        Index("ix_alert_notifications_pending", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_alert_notifications_developer_created", "developer_id", "created_at"),
    )


class AdminAlert(Base):
    __tablename__ = "admin_alerts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    # NULL when the alert concerns no single batch (e.g. a breaker opening).
    batch_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    context: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()


class BrokerMarker(Base):
    """The token of the marker key the sweeper keeps in the broker (tasks/broker_watch.py); one row per broker."""

    __tablename__ = "broker_markers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class AuditRecord(Base):
    """Append-only trail; sealed into a hash chain by a periodic task.

    A trigger forbids DELETE and any UPDATE except filling the seal columns once.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # When the step happened: clock_timestamp() (the statement's time, not the transaction's start), or the
    # step's own time when the writer knows it (ingest's `received` is the request's arrival).
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    correlation_id: Mapped[str] = mapped_column(String(128))
    # NULL for trail records that concern no batch.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    step: Mapped[str] = mapped_column(String(64))
    is_replay: Mapped[bool] = mapped_column(server_default=text("false"))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Seal columns: NULL until the sealing task chains the record.
    seal_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_audit_log_batch", "batch_id", "id"),
        Index("ix_audit_log_unsealed", "id", postgresql_where=text("seal_seq IS NULL")),
    )


class QuarantinedEvent(Base):
    """An event that a job could not process even though ingest accepted it: recorded, then skipped by every job.

    The backstop of "poison-proof by construction" (invariant 3): the batch and the developer's later batches
    go on; `celery -A tasks requeue --quarantined` releases the events after a fix and replays their batches.
    """

    __tablename__ = "quarantined_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    developer_id: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    job: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    quarantined_at: Mapped[datetime] = _now()
    # NULL while quarantined; set when released.
    released_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_quarantined_events_active", "developer_id", "event_id", unique=True,
              postgresql_where=text("released_at IS NULL")),
    )


class ImportJob(Base):
    """A history import (a WakaTime data export) run in the background: its file, progress and reported errors."""

    __tablename__ = "import_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
        Index("ix_import_jobs_developer_id", "developer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    developer_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32))  # "wakatime"
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    file_path: Mapped[str] = mapped_column(Text)
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    # An upload's copy under IMPORT_DIR, deleted once the job is done; a file the CLI imported in place is kept.
    owns_file: Mapped[bool] = mapped_column(server_default=text("false"))
    # Batches stored so far, in file order: a re-run of the job skips them (and re-reads nothing twice).
    batches_done: Mapped[int] = mapped_column(Integer, server_default="0")
    # Bytes of the file consumed when the last stored batch ended: the progress against file_bytes.
    bytes_read: Mapped[int] = mapped_column(BigInteger, server_default="0")
    read: Mapped[int] = mapped_column(BigInteger, server_default="0")
    accepted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    duplicates: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The first IMPORT_MAX_LISTED_ERRORS rejections, each with its position in the file (day and heartbeat index).
    errors: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    # Why the job failed (unreadable file), NULL otherwise.
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
