"""The transactional outbox (models/outbox.py, tasks/dispatch.py): publish after commit, relay, dead letter.

The broker is "down" for a publisher Celery app pointed at a closed port (the
worker's app is never touched); the fixture below closes the `broker` circuit
breaker afterwards, so later tests publish normally.
"""

from __future__ import annotations

import gc
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from sqlalchemy import func, select, text, update

from core.breakers import breakers
from core.settings import Settings
from models.db import Database
from models.tables import AdminAlert, Outbox
from tasks.celery_app import make_publisher
from tasks.dispatch import relay
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import persist_body, stored_batch, wait_processed

DEAD_BROKER = "redis://127.0.0.1:1/0"

# Celery's AsyncResult.__del__ cannot unsubscribe from a dead backend; that noise is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def broker_down(celery_worker, redis_url: str) -> Iterator[Celery]:
    """A publisher whose broker is unreachable."""
    bad = Settings.from_env(redis_url=DEAD_BROKER, outbox_max_attempts=3, outbox_base_delay_seconds=3600.0,
                            outbox_max_delay_seconds=3600.0)
    try:
        yield make_publisher(bad)
    finally:
        breakers.reset("broker")
        # The failed publishes leave AsyncResults bound to the dead backend; their __del__ fails. Collect them
        # now rather than at some random later point (a collection inside compile() trips a CPython 3.11 bug).
        gc.collect()


def outbox_row(db: Database, batch_id: str) -> Outbox:
    with db.session() as s:
        return s.scalars(select(Outbox).where(Outbox.batch_id == uuid.UUID(batch_id))).one()


def make_due(db: Database, outbox_id: int) -> None:
    with db.transaction() as s:
        s.execute(update(Outbox).where(Outbox.id == outbox_id).values(next_attempt_at=func.now()
                                                                      - text("interval '1 second'")))


def good_publisher(redis_url: str) -> Celery:
    return make_publisher(Settings.from_env(database_url=os.environ["DATABASE_URL"], redis_url=redis_url))


def test_broker_down_at_ingest_then_the_relay_publishes(db, make_token, broker_down, redis_url):
    from app import create_app

    token = make_token("dev-1")
    web = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": DEAD_BROKER,
                      "outbox_base_delay_seconds": 3600.0, "outbox_max_delay_seconds": 3600.0})
    body = batch([event("file.save", now() - timedelta(minutes=5))])
    random.seed(0)  # the jitter draw below is then 0.84 * 3600 s, so "in the future" cannot flake
    try:
        response = web.test_client().post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
        response.get_data()
        response.close()  # runs the publish-after-response hook, like a real server
        web.extensions["devpulse.publisher"].wait_idle()
    finally:
        web.extensions["devpulse.db"].dispose()
    assert response.status_code == 202, response.get_json()

    record = outbox_row(db, body["batch_id"])
    assert record.status == "pending"
    assert record.attempts == 1
    assert record.last_error
    assert record.next_attempt_at > datetime.now(UTC) + timedelta(minutes=10)
    with db.session() as s:
        assert stored_batch(s, uuid.UUID(body["batch_id"])).status == "persisted"

    # Not due yet: the relay leaves it alone even with a working broker.
    breakers.reset("broker")
    assert relay(db, good_publisher(redis_url)) == {"due": 0, "published": 0}

    make_due(db, record.id)
    assert relay(db, good_publisher(redis_url)) == {"due": 1, "published": 1}
    assert wait_processed(db, body["batch_id"]) == "processed"
    record = outbox_row(db, body["batch_id"])
    assert (record.status, record.attempts) == ("dispatched", 2)
    assert record.dispatched_at is not None
    assert relay(db, good_publisher(redis_url)) == {"due": 0, "published": 0}


def test_dead_letter_after_max_attempts(clean_db, broker_down):
    db = clean_db
    outcome = persist_body(db, batch([event("file.save", now() - timedelta(minutes=5))]))
    for attempt in range(1, broker_down.conf.devpulse_settings.outbox_max_attempts + 1):
        make_due(db, outcome.outbox_id)
        assert relay(db, broker_down) == {"due": 1, "published": 0}
        record = outbox_row(db, str(outcome.batch.batch_id))
        assert record.attempts == attempt
    assert record.status == "dead_letter"
    make_due(db, outcome.outbox_id)
    assert relay(db, broker_down) == {"due": 0, "published": 0}
    with db.session() as s:
        alerts = s.scalars(select(AdminAlert).where(AdminAlert.kind == "outbox_dead_letter")).all()
        assert [a.batch_id for a in alerts] == [outcome.batch.batch_id]
        assert alerts[0].context["attempts"] == broker_down.conf.devpulse_settings.outbox_max_attempts
        assert stored_batch(s, outcome.batch.batch_id).status == "persisted"


def test_the_relay_leaves_a_fresh_record_to_its_web_process(clean_db, celery_worker, redis_url):
    """Without a grace the relay (on the workers) raced every web publish; with it, it takes only the leftovers."""
    from models.outbox import PUBLISH_GRACE

    db = clean_db
    outcome = persist_body(db, batch([event("file.save", now() - timedelta(minutes=5))]))
    record = outbox_row(db, str(outcome.batch.batch_id))
    assert record.next_attempt_at == outcome.batch.received_at + PUBLISH_GRACE
    assert relay(db, good_publisher(redis_url)) == {"due": 0, "published": 0}
    make_due(db, record.id)  # the web never published it (it died, or the broker was down)
    assert relay(db, good_publisher(redis_url)) == {"due": 1, "published": 1}
    assert wait_processed(db, str(outcome.batch.batch_id)) == "processed"


def test_a_record_whose_publish_went_out_but_whose_commit_was_lost_is_not_published_again(
        clean_db, celery_worker, redis_url):
    """The database died between the publish and the commit that marks the record dispatched: the chord ran,
    the record is still pending. The relay must not run the batch a second time (nor record two completions)."""
    from models.outbox import start_dispatch
    from tasks.dispatch import _publish

    db = clean_db
    outcome = persist_body(db, batch([event("file.save", now() - timedelta(minutes=5))]))
    publisher = good_publisher(redis_url)
    with db.transaction() as s:  # the publish, then a "lost" commit: rolled back
        record = s.get(Outbox, outcome.outbox_id)
        _publish(publisher, start_dispatch(s, record))
        s.rollback()
    batch_id = str(outcome.batch.batch_id)
    assert wait_processed(db, batch_id) == "processed"
    make_due(db, outcome.outbox_id)
    assert relay(db, publisher) == {"due": 1, "published": 0}
    record = outbox_row(db, batch_id)
    assert record.status == "dispatched"
    with db.session() as s:
        steps = s.execute(text("SELECT step FROM audit_log WHERE batch_id = CAST(:b AS uuid) ORDER BY id"),
                          {"b": batch_id}).scalars().all()
    assert steps.count("completed") == 1, steps
    assert steps[-1] == "dispatch_skipped", steps
    # A requeue or replay record is written after the run it repeats: still published.
    from models.outbox import enqueue
    with db.transaction() as s:
        again = enqueue(s, outcome.batch.developer_id, outcome.batch.batch_id, "again", is_replay=True)
    make_due(db, again)
    assert relay(db, publisher) == {"due": 1, "published": 1}
    from tests.support.pipeline import wait_for

    def replayed() -> bool:
        with db.session() as s:
            return bool(s.execute(text("SELECT count(*) FROM audit_log WHERE batch_id = CAST(:b AS uuid)"
                                       " AND step = 'completed' AND is_replay"), {"b": batch_id}).scalar_one())
    wait_for(replayed)  # the replay's chord is done before the next test truncates the tables
