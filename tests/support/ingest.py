"""Helpers for the tests of POST /api/workflow/events/orchestrate (tests/app/test_ingest_*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from tests.support.database import TABLES
from tests.support.factories import auth, event

URL = "/api/workflow/events/orchestrate"
SUPPORTED = ["1.0", "1.1"]


def post(client, token: str | None, body: Any = None, *, headers: dict[str, str] | None = None, **kwargs: Any):
    all_headers = dict(auth(token)) if token else {}
    all_headers.update(headers or {})
    if body is not None:
        kwargs["json"] = body
    return client.post(URL, headers=all_headers, **kwargs)


def counts(db) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def counts_but_audit(db) -> dict[str, int]:
    """`counts` without the audit trail (which records refusals and resends too)."""
    return {t: n for t, n in counts(db).items() if t != "audit_log"}


def audit_steps(db, since_id: int = 0) -> list[str]:
    """The steps of the audit records after `since_id`, in order."""
    return [step for (step,) in query(db, "SELECT step FROM audit_log WHERE id > :i ORDER BY id", i=since_id)]


def last_audit_id(db) -> int:
    return query(db, "SELECT coalesce(max(id), 0) FROM audit_log")[0][0]


def query(db, sql: str, **params: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def stored_events(db, batch_id: str | None = None) -> list[Any]:
    sql = "SELECT * FROM raw_events" + (" WHERE batch_id = :b" if batch_id else "") + " ORDER BY batch_id, seq"
    return query(db, sql, b=batch_id)


def nothing_written(db) -> None:
    """Nothing stored: every table empty but the tokens and the audit trail, which holds `refused` records only
    (a refused request leaves its audit record, app/ingest/refusals.py)."""
    kept = ("api_tokens", "audit_log")
    assert {t: n for t, n in counts(db).items() if t not in kept} == {t: 0 for t in TABLES if t not in kept}
    assert {step for (step,) in query(db, "SELECT DISTINCT step FROM audit_log")} <= {"refused"}


def edit(ts: datetime | None = None, **kw: Any) -> dict[str, Any]:
    return event("file.edit", ts, file="src/a.py", lines_added=3, lines_deleted=1, **kw)
