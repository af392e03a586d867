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


def query(db, sql: str, **params: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def stored_events(db, batch_id: str | None = None) -> list[Any]:
    sql = "SELECT * FROM raw_events" + (" WHERE batch_id = :b" if batch_id else "") + " ORDER BY batch_id, seq"
    return query(db, sql, b=batch_id)


def nothing_written(db) -> None:
    assert {t: n for t, n in counts(db).items() if t != "api_tokens"} == {t: 0 for t in TABLES if t != "api_tokens"}


def edit(ts: datetime | None = None, **kw: Any) -> dict[str, Any]:
    return event("file.edit", ts, file="src/a.py", lines_added=3, lines_deleted=1, **kw)
