"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Storage unavailable is a 503 with Retry-After.
"""

from __future__ import annotations

from tests.support.factories import auth, batch, event
from tests.support.ingest import URL, nothing_written


def test_storage_unavailable_is_503_with_retry_after(app, token, clean_db):
    from app import create_app
    from core.breakers import breakers

    broken = create_app({"database_url": "postgresql://postgres@127.0.0.1:1/nowhere", "db_retry_budget_ms": 50})
    try:
        r = broken.test_client().post(URL, json=batch([event()]), headers=auth(token))
    finally:
        broken.extensions["devpulse.db"].dispose()
        breakers.reset("database")  # one breaker per process: do not leave it open for the next test
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "storage_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    nothing_written(clean_db)
