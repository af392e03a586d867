"""Erasing one developer's data on request (the only path that may delete raw events).

One transaction deletes the developer's raw and normalized events, batches and their jobs and outbox records,
metrics, breakdowns, alerts and their notification records, quarantine records, settings, tokens and the admin
alerts that name the developer. Raw events are append-only by a trigger; it lets a DELETE through only while the
transaction has set `devpulse.erasure` to the developer's id (SET LOCAL: gone at commit), so every other path stays
refused.

The audit trail is a hash chain and keeps its records (they hold ids and counts, never event content); the
erasure is added to it as one record naming the developer only by the SHA-256 of its id, with the counts, who
asked and when. The pipeline's per-developer locks are taken first, so no recompute of this developer runs
across the erasure; a job of an erased batch that was still queued finds no batch and changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from models.aggregation import lock_developer
from models.batch_lifecycle import audit

# In delete order: rows that reference others first (normalized -> raw events -> batches).
_DELETES = (
    ("normalized_events", "developer_id = :d"),
    ("quarantined_events", "developer_id = :d"),
    ("raw_events", "developer_id = :d"),
    ("batch_jobs", "developer_id = :d"),
    ("outbox", "developer_id = :d"),
    ("alert_notifications", "developer_id = :d"),
    ("import_jobs", "developer_id = :d"),
    ("batches", "developer_id = :d"),
    ("metric_slots", "developer_id = :d"),
    ("activity_breakdowns", "developer_id = :d"),
    ("alerts", "developer_id = :d"),
    ("developer_settings", "developer_id = :d"),
    # Before the tokens: a login link is known by the hash of the token it logs in with.
    ("login_links", "token_hash IN (SELECT token_hash FROM api_tokens WHERE developer_id = :d)"),
    ("api_tokens", "developer_id = :d"),
    ("admin_alerts", "context->>'developer_id' = :d"),
)


@dataclass(frozen=True)
class Erasure:
    developer_hash: str
    deleted: dict[str, int]

    @property
    def found(self) -> bool:
        return any(self.deleted.values())


def developer_hash(developer_id: str) -> str:
    return hashlib.sha256(developer_id.encode("utf-8")).hexdigest()


def developer_known(session: Session, developer_id: str) -> bool:
    """Whether anything of the developer is stored: a token, a batch or settings."""
    return bool(session.execute(text(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE developer_id = :d)"
        " OR EXISTS (SELECT 1 FROM batches WHERE developer_id = :d)"
        " OR EXISTS (SELECT 1 FROM developer_settings WHERE developer_id = :d)"), {"d": developer_id}).scalar())


def erase_developer(session: Session, developer_id: str, *, requested_by: str, correlation_id: str) -> Erasure:
    """Delete everything stored of the developer in the session's transaction; audited when anything was."""
    for scope in ("metrics", "danger"):
        lock_developer(session, scope, developer_id)
    session.execute(text("SELECT set_config('devpulse.erasure', :d, true)"), {"d": developer_id})
    deleted = {table: cast(CursorResult[Any], session.execute(text(f"DELETE FROM {table} WHERE {where}"),
                                                              {"d": developer_id})).rowcount
               for table, where in _DELETES}
    session.execute(text("SELECT set_config('devpulse.erasure', '', true)"))
    erasure = Erasure(developer_hash(developer_id), deleted)
    if erasure.found:
        audit(session, "developer_erased", batch_id=None, correlation_id=correlation_id,
              developer_sha256=erasure.developer_hash, deleted=deleted, requested_by=requested_by)
    return erasure
