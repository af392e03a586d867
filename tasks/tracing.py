"""Tracing of Celery publishes and task runs (core/tracing.py says when tracing is on).

The maintained Celery instrumentation makes a PRODUCER span per publish and injects its context into the task
message's headers; the task run (a CONSUMER span) continues it in the worker. A chord's callback is published
by the worker that ran the last header job, inside that job's span, so POST -> publish -> header jobs ->
callback stay one trace across the broker. Each run's span also gets the batch's attributes.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_prerun

from core import tracing

_ANNOTATE_UID = "devpulse.tracing.annotate_task_span"


def instrument_celery() -> None:
    """Install the Celery instrumentation in this process, if tracing is on (else nothing at all)."""
    if not tracing.enabled():
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    tracing.instrument(CeleryInstrumentor())
    # Connected after the instrumentation's own task_prerun receiver (receivers run in order of connection),
    # so the run's span is the current one when the attributes are set.
    task_prerun.disconnect(dispatch_uid=_ANNOTATE_UID)
    task_prerun.connect(_annotate_task_span, weak=False, dispatch_uid=_ANNOTATE_UID)


def _annotate_task_span(args: Any = None, kwargs: Any = None, **_: object) -> None:
    # Pipeline tasks receive the batch's context as their first argument (or `ctx=`); maintenance tasks none.
    contexts = [a for a in (*(args or ()), *(kwargs or {}).values()) if isinstance(a, dict)]
    ctx = next((a for a in contexts if "batch_id" in a), None)
    if ctx is not None:
        tracing.annotate(tracing.batch_attributes(ctx))
    # Hook for automations (not built yet): a step task that receives a context naming its execution gets the
    # execution's attributes too. A step published by the previous step's task continues that trace through the
    # message headers by itself; a step published later from PostgreSQL (a timer, a join, the relay) must store
    # `tracing.current_traceparent()` with its row and publish inside `tracing.span(..., traceparent=...)`, as the
    # outbox does (tasks/dispatch.py), so that a trigger and all of its steps stay one trace.
    execution = next((a for a in contexts if "execution_id" in a), None)
    if execution is not None:
        tracing.annotate(tracing.execution_attributes(execution))


def start_worker_tracing(service_name: str = "devpulse-worker") -> None:
    """A worker process's tracing, from its settings (prefork children and the solo pool: worker_process_init;
    the operator commands before they publish)."""
    from tasks.celery_app import app

    if tracing.start(service_name, endpoint=app.conf.devpulse_settings.otel_exporter_otlp_endpoint):
        instrument_celery()
