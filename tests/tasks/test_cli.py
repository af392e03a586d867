"""The operator commands on the `celery` program (`celery -A tasks replay|requeue|batches|audit`), run both
in-process through celery's own click group and as a real subprocess, against the real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.bin.celery import celery as celery_cmd
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from models.audit_chain import seal_pending
from models.db import Database
from models.outbox import record_failure
from models.tables import (
    AdminAlert,
    Alert,
    AuditRecord,
    Batch,
    BatchJob,
    MetricSlot,
    NormalizedEvent,
    Outbox,
    RawEvent,
)
from tests.support.factories import auth, batch, event, iso, now
from tests.support.pipeline import stored_batch, wait_for, wait_processed

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")


@pytest.fixture
def cli(celery_app):
    def run(*args: str) -> Result:
        return CliRunner().invoke(celery_cmd, ["-A", "tasks", *args], catch_exceptions=False)

    return run


def run_celery(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`celery -A tasks ...` as an operator runs it: a new process configured by the environment only."""
    environ = {**os.environ, "LOG_JSON": "0", **env}
    return subprocess.run([str(CELERY), "-A", "tasks", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=60)


class ClosingClient(FlaskClient):
    """Closes each response like a real server, which runs the publish-after-response hook."""

    def open(self, *args: Any, **kwargs: Any):
        response = super().open(*args, **kwargs)
        response.get_data()
        response.close()
        self.application.extensions["devpulse.publisher"].wait_idle()
        return response


def post(client: FlaskClient, token: str, events: list[dict[str, Any]], developer_id: str = "dev-1") -> str:
    body = batch(events, developer_id=developer_id)
    r = client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    return body["batch_id"]


def risky_events() -> list[dict[str, Any]]:
    """Edits plus 25 failed builds in 10 minutes: metrics, normalized rows and an excessive-errors alert."""
    t0 = now() - timedelta(hours=2)
    return [
        event("file.edit", t0, file="src/a.py", lines_added=3, lines_deleted=1, chars_typed=40),
        event("file.save", t0 + timedelta(seconds=30), file="src/a.py"),
        *[event("build.result", t0 + timedelta(seconds=60 + 20 * i), success=False) for i in range(25)],
    ]


def get_batch(db: Database, batch_id: str) -> Batch:
    with db.session() as s:
        return stored_batch(s, uuid.UUID(batch_id))


def derived_state(db: Database) -> dict[str, Any]:
    """Every derived row, minus the bookkeeping timestamps a recompute may touch."""
    def rows(model: Any, skip: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        cols = [c for c in model.__table__.columns if c.name not in skip]
        return sorted(tuple(r) for r in s.execute(select(*cols)))

    with db.session() as s:
        return {
            "metrics": rows(MetricSlot, ("computed_at",)),
            "normalized": rows(NormalizedEvent, ("normalized_at",)),
            "alerts": sorted((str(a.alert_id), a.pattern, a.episode_key, a.severity, a.window_start, a.window_end,
                              str(a.details)) for a in s.scalars(select(Alert))),
            "admin_alerts": s.scalar(select(func.count()).select_from(AdminAlert)),
            "raw_events": s.scalar(select(func.count()).select_from(RawEvent)),
        }


def count(db: Database, model: Any, *where: Any) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_commands_are_registered_on_the_celery_program() -> None:
    assert {"replay", "requeue", "batches", "audit"} <= set(celery_cmd.commands)
    assert {"verify", "seal"} <= set(celery_cmd.commands["audit"].commands)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["replay"], 2, "give --batch ID (optionally with --developer ID) or --developer ID"),
    (["replay", "--batch", "00000000-0000-0000-0000-000000000001", "--developer", "d"], 1,
     "unknown batch 00000000-0000-0000-0000-000000000001 of developer d"),
    (["replay", "--batch", "not-a-uuid"], 2, "'not-a-uuid' is not a batch id"),
    (["replay", "--batch", "00000000-0000-0000-0000-000000000001"], 1,
     "unknown batch 00000000-0000-0000-0000-000000000001"),
    (["replay", "--developer", "d", "--since", "last tuesday"], 2, "'last tuesday' is not a timestamp"),
    (["replay", "--developer", "d", "--since", "2024-05-02", "--until", "2024-05-01"], 2, "--since must be before"),
    (["replay", "--batch", str(uuid.uuid4()), "--since", "2h"], 2, "use them with --developer"),
    (["requeue"], 2, "nothing selected"),
    (["requeue", "--stuck-for", "15x"], 2, "'15x' is not a duration"),
    (["requeue", "--stuck-for", "0s"], 2, "longer than zero"),
    (["batches", "--status", "done"], 2, "'done' is not one of"),
    (["batches", "--limit", "0"], 2, "--limit"),
    (["audit", "verify", "--since", "soon"], 2, "'soon' is not a timestamp"),
    (["audit", "seal", "--grace", "-1"], 2, "--grace"),
])
def test_bad_arguments_exit_non_zero_with_a_clear_message(cli, clean_db, args, code, message):
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert count(clean_db, Outbox) == 0 and count(clean_db, AuditRecord) == 0


def test_unreachable_database_is_a_clear_error(redis_url: str) -> None:
    proc = run_celery("batches", DATABASE_URL="postgresql://postgres@127.0.0.1:9/devpulse")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot reach the database (DATABASE_URL)" in proc.stderr


def test_batches_lists_states_with_filters(cli, pipeline_client, make_token, db):
    token = make_token("dev-1")
    other = make_token("dev-2")
    done = post(pipeline_client, token, [event("file.save")])
    wait_processed(db, done)
    with db.transaction() as s:
        s.execute(text("UPDATE batches SET status = 'failed', last_error = :e WHERE batch_id = :b"),
                  {"e": "WorkerLostError: " + "x" * 100, "b": done})
    second = post(pipeline_client, other, [event("file.save"), event("file.open")], developer_id="dev-2")
    wait_processed(db, second)

    result = cli("batches")
    assert result.exit_code == 0, result.output
    header, rule, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["batch_id", "developer", "status", "recv"]
    assert set(rule) == {"-", " "}
    assert lines[0].startswith(second) and lines[1].startswith(done) and lines[-1] == "2 batch(es)"
    assert "failed" in lines[1] and "WorkerLostError: xxxx" in lines[1] and "x" * 50 not in lines[1]

    only = cli("batches", "--status", "failed", "--developer", "dev-1", "--limit", "5")
    assert done in only.stdout and second not in only.stdout
    assert cli("batches", "--developer", "nobody").stdout.strip() == "no batches match"


def test_replay_recomputes_without_new_effects(cli, pipeline_client, make_token, db):
    token = make_token("dev-1")
    events = risky_events()
    batch_id = post(pipeline_client, token, events)
    assert wait_processed(db, batch_id) == "processed"
    before = derived_state(db)
    assert before["alerts"] and before["metrics"] and len(before["normalized"]) == len(events)
    audit_before = count(db, AuditRecord)

    # A dry run (by batch, and by developer over the events' time) shows the batch and changes nothing.
    dry = cli("replay", "--batch", batch_id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert batch_id in dry.stdout and "would replay" in dry.stdout and "nothing was changed" in dry.stdout
    window = cli("replay", "--developer", "dev-1", "--since", iso(now() - timedelta(hours=3)), "--until", "1h",
                 "--dry-run")
    assert window.exit_code == 0 and batch_id in window.stdout, window.output
    assert cli("replay", "--developer", "dev-1", "--since", "1h", "--dry-run").stdout.strip() == "no batches match"
    assert get_batch(db, batch_id).replay_count == 0
    assert count(db, Outbox) == 1 and count(db, AuditRecord) == audit_before

    # The real thing, as an operator runs it: a separate process publishing to the real worker.
    proc = run_celery("replay", "--batch", batch_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert batch_id in proc.stdout and "replayed" in proc.stdout and "1 batch(es) replayed" in proc.stdout

    wait_for(lambda: count(db, AuditRecord, AuditRecord.batch_id == uuid.UUID(batch_id),
                           AuditRecord.step == "completed", AuditRecord.is_replay.is_(True)))
    replayed = get_batch(db, batch_id)
    assert (replayed.status, replayed.replay_count, replayed.dispatch_count) == ("processed", 1, 2)
    assert derived_state(db) == before  # same metrics, same normalized rows, no extra alert
    with db.session() as s:
        steps = s.execute(select(AuditRecord.step).where(AuditRecord.batch_id == uuid.UUID(batch_id),
                                                         AuditRecord.is_replay.is_(True))).scalars().all()
        jobs = s.scalars(select(BatchJob).where(BatchJob.batch_id == uuid.UUID(batch_id))).all()
        record = s.scalars(select(Outbox).order_by(Outbox.id.desc())).first()
    assert {"replay_requested", "dispatched", "job_started", "job_finished", "completed"} <= set(steps)
    assert steps.count("job_finished") == 3
    assert all(j.is_replay and j.status == "ok" for j in jobs) and len(jobs) == 3
    assert record.is_replay and record.status == "dispatched"


def test_requeue_failed_dead_letter_and_stuck(cli, app, celery_worker, make_token, db):
    token = make_token("dev-1")
    publishing = ClosingClient(app, app.response_class)
    failed = post(publishing, token, [event("file.save")])
    stuck = post(publishing, token, [event("file.open")])
    wait_processed(db, failed)
    wait_processed(db, stuck)
    # The plain client does not close the response, so nothing is published: a broker outage then
    # dead-letters the record (one attempt allowed here).
    dead = post(FlaskClient(app, app.response_class), token, [event("file.close")])
    with db.transaction() as s:
        dead_record = s.scalars(select(Outbox).where(Outbox.batch_id == uuid.UUID(dead))).one()
        assert record_failure(s, dead_record.id, "ConnectionError: broker down", max_attempts=1, base=1,
                              cap=1) == "dead_letter"
        s.execute(text("UPDATE batches SET status = 'failed', last_error = 'WorkerLostError: killed' "
                       "WHERE batch_id = :b"), {"b": failed})
        s.execute(text("UPDATE batches SET status = 'processing', updated_at = now() - interval '1 hour' "
                       "WHERE batch_id = :b"), {"b": stuck})
    outbox_before = count(db, Outbox)

    # An in-flight batch cannot be replayed: requeue is the tool for it.
    refused = cli("replay", "--batch", dead)
    assert refused.exit_code == 1 and "was not replayed: in flight (persisted)" in refused.stderr

    assert cli("requeue", "--stuck-for", "2h").stdout.strip() == "nothing to requeue"
    dry = cli("requeue", "--failed", "--dead-letter", "--stuck-for", "15m", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert all(b in dry.stdout for b in (failed, dead, stuck)) and dry.stdout.count("would requeue") == 3
    assert count(db, Outbox) == outbox_before

    result = cli("requeue", "--failed", "--dead-letter", "--stuck-for", "15m")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:-1]}
    assert "failed: WorkerLostError: killed" in lines[failed] and lines[failed].endswith("requeued")
    assert "dead-lettered after 1 attempt(s)" in lines[dead] and lines[dead].endswith("requeued")
    assert "stuck in processing for 1h00m" in lines[stuck] and lines[stuck].endswith("requeued")
    for batch_id in (failed, dead, stuck):
        assert wait_processed(db, batch_id, statuses=("processed",)) == "processed"

    with db.session() as s:
        records = s.scalars(select(Outbox).where(Outbox.batch_id == uuid.UUID(dead)).order_by(Outbox.id)).all()
    assert [r.status for r in records] == ["dead_letter", "dispatched"]  # the dead one stays as history
    assert count(db, AuditRecord, AuditRecord.step == "requeued") == 3
    assert cli("requeue", "--failed", "--dead-letter").stdout.strip() == "nothing to requeue"


def test_audit_seal_and_verify_commands(cli, clean_db):
    db = clean_db
    with db.transaction() as s:
        for i in range(4):
            s.execute(text("INSERT INTO audit_log (correlation_id, step, details) VALUES ('c', 'step', :d)"),
                      {"d": f'{{"i": {i}}}'})
    assert "OK: no sealed records" in cli("audit", "verify").stdout
    sealed = cli("audit", "seal", "--grace", "0")
    assert sealed.exit_code == 0 and "sealed 4 record(s): seal_seq 1..4" in sealed.stdout, sealed.output
    assert cli("audit", "seal", "--grace", "0").stdout.startswith("nothing to seal")
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "OK: 4 sealed record(s) verified (seal_seq 1..4)" in ok.stdout, ok.output
    assert "unsealed: 0" in ok.stdout

    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        victim = conn.execute(text("SELECT id FROM audit_log WHERE seal_seq = 3")).scalar_one()
        conn.execute(text("UPDATE audit_log SET details = '{\"i\": 42}' WHERE seal_seq = 3"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    proc = run_celery("audit", "verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"BROKEN: first broken link at seal_seq 3 (id {victim}): edited" in proc.stderr


def test_beat_seals_the_audit_log(celery_app, clean_db):
    from tasks.maintenance import seal_audit_log
    from tasks.schedule import BEAT_SCHEDULE

    assert {"task": "devpulse.maintenance.seal_audit_log", "schedule": 10.0,
            "options": {"expires": 10.0}} in BEAT_SCHEDULE.values()
    with clean_db.transaction() as s:
        s.execute(text("INSERT INTO audit_log (correlation_id, step, created_at) "
                       "VALUES ('c', 'old', now() - interval '1 minute'), ('c', 'new', now())"))
    assert seal_audit_log.apply().get() == {"sealed": 1, "last_seq": 1}  # the fresh one waits for the grace
    assert seal_pending(clean_db, grace_seconds=0).last_seq == 2


def test_replay_of_a_batch_id_several_developers_use_needs_developer(cli, pipeline_client, make_token, db):
    bid = str(uuid.uuid4())
    for developer in ("dev-1", "dev-2"):
        body = batch([event("file.save")], developer_id=developer, batch_id=bid)
        r = pipeline_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(make_token(developer)))
        assert r.status_code == 202, r.get_json()
        assert wait_processed(db, bid, developer_id=developer) == "processed"
    outbox_before = count(db, Outbox)

    ambiguous = cli("replay", "--batch", bid)
    assert ambiguous.exit_code == 1, ambiguous.output
    assert f"batch {bid} is ambiguous: 2 developers use this id: dev-1, dev-2" in ambiguous.stderr
    assert "--developer" in ambiguous.stderr
    assert count(db, Outbox) == outbox_before

    chosen = cli("replay", "--batch", bid, "--developer", "dev-2")
    assert chosen.exit_code == 0, chosen.output
    assert "1 batch(es) replayed" in chosen.stdout and "dev-2" in chosen.stdout and "dev-1" not in chosen.stdout
    wait_for(lambda: count(db, AuditRecord, AuditRecord.batch_id == uuid.UUID(bid), AuditRecord.step == "completed",
                           AuditRecord.is_replay.is_(True)))
    with db.session() as s:
        replays = {d: stored_batch(s, bid, d).replay_count for d in ("dev-1", "dev-2")}
        jobs = s.execute(select(BatchJob.developer_id, BatchJob.is_replay).where(BatchJob.batch_id == uuid.UUID(bid))
                         .order_by(BatchJob.developer_id)).all()
    assert replays == {"dev-1": 0, "dev-2": 1}
    assert [tuple(j) for j in jobs] == [("dev-1", False)] * 3 + [("dev-2", True)] * 3
    assert cli("replay", "--batch", bid, "--developer", "dev-3").exit_code == 1


def test_requeue_dead_letter_makes_dead_alert_notifications_pending_again(cli, clean_db):
    from models.alert_notifications import record_failure as notification_failure
    from models.alert_notifications import record_notification
    from models.tables import AlertNotification
    from tests.support.pipeline import persist_body

    stored = persist_body(clean_db, batch([event("file.save")]))
    document = {"alert_id": str(uuid.uuid4()), "version": 1, "severity": "high", "developer_id": "dev-1"}
    with clean_db.transaction() as s:
        notification = record_notification(s, "dev-1", stored.batch.batch_id, "corr", [document], max_per_hour=10)
        assert notification is not None
        assert notification_failure(s, notification, channel="webhook", error="HTTPError: 500", public_error="x",
                                    max_attempts=1, base=1, cap=1) == "dead_letter"

    def state() -> tuple[str, int]:
        with clean_db.session() as s:
            record = s.get(AlertNotification, notification)
            return record.status, record.attempts

    dry = cli("requeue", "--dead-letter", "--dry-run")
    assert f"alert notification(s) {notification}: would be delivered again" in dry.stdout
    assert state() == ("dead_letter", 1)
    done = cli("requeue", "--dead-letter")
    assert f"alert notification(s) {notification}: pending again" in done.stdout
    assert state() == ("pending", 0)
