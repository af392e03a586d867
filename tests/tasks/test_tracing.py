"""One trace per batch, from the POST through the outbox publish, the header jobs and the callback.

Real servers throughout (PostgreSQL, Redis as broker and result backend, the in-process worker); the spans are
collected by the OpenTelemetry SDK's in-memory exporter, installed as an OTLP endpoint would install it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.audit_chain import batch_trail
from models.tables import Outbox
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_for, wait_processed
from tests.support.tracing import json_log_lines, traced

HEADER = ("devpulse.aggregate", "devpulse.normalize", "devpulse.detect_danger")
CALLBACK = "devpulse.mark_batch_processed"
ATTRIBUTES = ("batch.id", "developer.id", "correlation_id", "is_replay")


@pytest.fixture
def spans(celery_worker):
    with traced() as exporter:
        yield exporter


@pytest.fixture
def traced_client(spans, pipeline_client):
    # `spans` first: the app must be built with tracing on.
    return pipeline_client


def _body() -> dict[str, Any]:
    t0 = now() - timedelta(minutes=20)
    return batch([event("file.edit", t0, file="src/a.py", lines_added=2, lines_deleted=0, chars_typed=9),
                  event("file.save", t0 + timedelta(seconds=30), file="src/a.py")])


def _finished(exporter, name: str, count: int = 1) -> list[Any]:
    """The finished spans called `name`, once there are `count` of them (a task's span ends after its result)."""
    return wait_for(lambda: (found := [s for s in exporter.get_finished_spans() if s.name == name])
                    and len(found) >= count and found, timeout=20)


def _one(spans: list[Any], name: str) -> Any:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _assert_chord_trace(exporter, publish: Any, batch_id: str, *, is_replay: bool) -> list[Any]:
    """The chord below `publish`: each header job published by it and run in the worker as the child of its
    publish, the callback published by a header job's run; every run names the batch. Returns the trace."""
    run_callback = _finished(exporter, f"run/{CALLBACK}")[-1]
    trace_id = publish.context.trace_id
    trace = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in trace}
    runs = []
    for task in HEADER:
        sent = _one(trace, f"apply_async/{task}")
        assert sent.parent.span_id == publish.context.span_id
        run = _one(trace, f"run/{task}")
        assert run.parent.span_id == sent.context.span_id  # across the broker
        runs.append(run)
    sent_callback = _one(trace, f"apply_async/{CALLBACK}")
    assert sent_callback.parent.span_id in {r.context.span_id for r in runs}
    assert run_callback.context.trace_id == trace_id
    assert run_callback.parent.span_id == sent_callback.context.span_id
    for run in (*runs, run_callback, publish):
        assert {k: run.attributes.get(k) for k in ATTRIBUTES} == {
            "batch.id": batch_id, "developer.id": "dev-1", "correlation_id": run.attributes["correlation_id"],
            "is_replay": is_replay}, run.name
    # The database and the broker are traced inside the same trace (their maintained instrumentations).
    assert any(s.attributes.get("db.system") == "postgresql" and by_id.get(s.parent.span_id) in runs
               for s in trace if s.parent)
    assert any(s.attributes.get("db.system") == "redis" for s in trace)
    return trace


def test_one_trace_from_the_post_to_the_callback(traced_client, spans, make_token, db):
    token = make_token("dev-1")
    body = _body()
    with json_log_lines() as lines:
        r = traced_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
        assert r.status_code == 202, r.get_json()
        assert wait_processed(db, body["batch_id"]) == "processed"
        _finished(spans, f"run/{CALLBACK}")

    post = _one(spans.get_finished_spans(), "POST /api/workflow/events/orchestrate")
    trace_id = post.context.trace_id
    assert post.attributes["batch.id"] == body["batch_id"] and post.attributes["developer.id"] == "dev-1"
    assert post.attributes["correlation_id"] == r.headers["X-Correlation-ID"]
    assert post.attributes["is_replay"] is False
    publish = _one(spans.get_finished_spans(), "outbox publish")
    assert publish.context.trace_id == trace_id and publish.parent.span_id == post.context.span_id
    _assert_chord_trace(spans, publish, body["batch_id"], is_replay=False)

    # Every audit record of the batch, from the web and the worker alike, names the trace.
    hex_id = format(trace_id, "032x")
    with db.session() as s:
        trail = batch_trail(s, "dev-1", body["batch_id"])
    assert trail is not None
    steps = {rec["step"] for rec in trail}
    assert {"received", "validated", "persisted", "dispatched", "job_started", "job_finished", "completed"} <= steps
    assert {rec["step"]: rec["details"].get("trace_id") for rec in trail} == dict.fromkeys(steps, hex_id)
    # And so do the JSON log lines of the batch (here: the publish's `dispatched` line).
    dispatched = [line for line in lines if line["event"] == "dispatched" and line["batch_id"] == body["batch_id"]]
    assert dispatched and dispatched[0]["trace_id"] == hex_id


def test_the_relay_continues_the_requests_trace(spans, client, celery_app, make_token, db):
    """A record the web did not publish (the plain test client never runs the publish) is published later by the
    relay, in another trace (its own task run): the publish still continues the request's trace."""
    from core import tracing
    from tasks.dispatch import dispatch_record

    token = make_token("dev-1")
    body = _body()
    r = client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    post = _one(spans.get_finished_spans(), "POST /api/workflow/events/orchestrate")
    with db.session() as s:
        record = s.scalars(select(Outbox).where(Outbox.batch_id == uuid.UUID(body["batch_id"]))).one()
    assert record.traceparent.split("-")[1:3] == [f"{post.context.trace_id:032x}", f"{post.context.span_id:016x}"]

    with tracing.span("relay run"):
        assert dispatch_record(db, celery_app, record.id)
    assert wait_processed(db, body["batch_id"]) == "processed"
    relay_run = _one(spans.get_finished_spans(), "relay run")
    publish = _one(spans.get_finished_spans(), "outbox publish")
    assert publish.context.trace_id == post.context.trace_id and publish.parent.span_id == post.context.span_id
    assert [link.context.span_id for link in publish.links] == [relay_run.context.span_id]
    _assert_chord_trace(spans, publish, body["batch_id"], is_replay=False)


def test_a_replay_is_marked_on_its_spans_and_records(traced_client, spans, celery_app, make_token, db):
    from models.operations import replay
    from tasks.dispatch import dispatch_record

    token = make_token("dev-1")
    body = _body()
    assert traced_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token)).status_code == 202
    assert wait_processed(db, body["batch_id"]) == "processed"
    _finished(spans, f"run/{CALLBACK}")
    spans.clear()

    # As `celery -A tasks replay` does: outside any trace, so the replay starts its own.
    rows = replay(db, lambda outbox_id: dispatch_record(db, celery_app, outbox_id),
                  batch_id=uuid.UUID(body["batch_id"]))
    assert [row.action for row in rows] == ["replayed"]
    publish = _one(spans.get_finished_spans(), "outbox publish")
    assert publish.parent is None and publish.attributes["is_replay"] is True
    _assert_chord_trace(spans, publish, body["batch_id"], is_replay=True)
    hex_id = format(publish.context.trace_id, "032x")
    with db.session() as s:
        trail = batch_trail(s, "dev-1", body["batch_id"])
    assert trail is not None
    replayed = [rec for rec in trail if rec["is_replay"] and rec["step"] != "replay_requested"]
    assert {rec["step"] for rec in replayed} >= {"dispatched", "job_started", "job_finished", "completed"}
    assert all(rec["details"].get("trace_id") == hex_id for rec in replayed)


def test_the_automation_hook_names_an_execution_on_its_step_span(spans):
    """Automations are not built yet: a step task whose context names its execution gets these attributes."""
    from core import tracing
    from tasks.tracing import _annotate_task_span

    with tracing.span("run/devpulse.automation_step"):
        _annotate_task_span(args=({"execution_id": "e-1", "workflow_id": "w-1", "step": "notify",
                                   "correlation_id": "c-1", "is_replay": True},))
    span = _one(spans.get_finished_spans(), "run/devpulse.automation_step")
    assert dict(span.attributes) == {"execution.id": "e-1", "workflow.id": "w-1", "step.name": "notify",
                                     "correlation_id": "c-1", "is_replay": True}
