"""The Celery app: one queue per kind of work, at-least-once delivery settings, one beat schedule."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init
from kombu import Exchange, Queue

from activity.danger import DangerThresholds
from core import logging as json_logging
from core.settings import Settings
from core.webhooks import admin_notifier
from tasks.redis_transport import TRANSPORT, publish_only_backend_url
from tasks.schedule import BEAT_SCHEDULE
from tasks.tracing import start_worker_tracing

QUEUES = ("aggregation", "normalization", "danger", "pipeline", "maintenance")

TASK_ROUTES = {
    "devpulse.aggregate": {"queue": "aggregation"},
    "devpulse.normalize": {"queue": "normalization"},
    "devpulse.detect_danger": {"queue": "danger"},
    "devpulse.mark_batch_processed": {"queue": "pipeline"},
    "devpulse.mark_batch_failed": {"queue": "pipeline"},
    "devpulse.deliver_alert_notification": {"queue": "danger"},
    "devpulse.maintenance.*": {"queue": "maintenance"},
}


TASK_MODULES = ("tasks.pipeline", "tasks.maintenance", "tasks.alert_delivery", "tasks.imports")


def make_celery(settings: Settings | None = None, *, include: tuple[str, ...] = TASK_MODULES) -> Celery:
    settings = settings or Settings.from_env()
    celery = Celery("devpulse", include=list(include))
    celery.conf.update(
        broker_url=settings.redis_url,
        broker_transport=TRANSPORT,
        result_backend=settings.redis_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        # No STARTED state in the result backend: it cost a Redis write and publish per task (four per batch), and
        # Flower shows a task as started from the worker's task events anyway.
        task_track_started=False,
        # Flower learns of tasks from the workers' events; a 'sent' event per publish would cost the web
        # process CPU on every ingest for a state nobody needs.
        task_send_sent_event=False,
        worker_send_task_events=True,
        # Each queue gets its own direct exchange and routing key: sharing the default exchange and key
        # would bind every queue to every message, delivering each task once per queue.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="pipeline",
        task_routes=TASK_ROUTES,
        result_expires=24 * 3600,
        result_extended=True,
        # An unacknowledged message comes back after this long if its worker vanished entirely;
        # the sweeper covers the rest.
        broker_transport_options={"visibility_timeout": 3 * settings.task_time_limit,
                                  "socket_connect_timeout": 2, "socket_timeout": 5},
        result_backend_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5},
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=BEAT_SCHEDULE,
        timezone="UTC",
        enable_utc=True,
    )
    celery.conf.devpulse_settings = settings
    # Checked here, at start-up: a bad DANGER_* value stops the worker with a clear message, not every job.
    celery.conf.devpulse_thresholds = DangerThresholds.from_overrides(
        {"max_debug_session_hours": settings.max_debug_session_hours, **settings.danger})
    admin_notifier.configure(settings.admin_alert_webhook_url)
    return celery


app = make_celery()


# The web process only publishes (the outbox relay owns retrying), so when Redis is down a publish must fail
# fast instead of holding its thread: by default kombu keeps reconnecting to the broker for its connect timeout
# and the result backend (Celery subscribes to every sent task's result channel) for ~20 s.
PUBLISHER_BROKER_OPTIONS = {"max_retries": 0}
PUBLISHER_RESULT_OPTIONS = {"retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                             "interval_max": 0.2}}


def make_publisher(settings: Settings) -> Celery:
    """The web's own Celery app (built in `create_app`, like Flask's `celery_init_app`): it only publishes
    signatures by task name, with fail-fast connection options, and never runs a task."""
    celery = make_celery(settings, include=())
    celery.conf.update(
        result_backend=publish_only_backend_url(settings.redis_url),
        broker_transport_options={**celery.conf.broker_transport_options, **PUBLISHER_BROKER_OPTIONS},
        result_backend_transport_options={**celery.conf.result_backend_transport_options,
                                          **PUBLISHER_RESULT_OPTIONS},
    )
    return celery


@setup_logging.connect
def _json_logs(loglevel: str | int | None = None, **_: object) -> None:
    # Connecting this signal stops Celery from installing its own handlers: worker and beat log JSON too.
    settings = app.conf.devpulse_settings
    if settings.log_json:
        json_logging.configure_logging(settings.log_level)


# Tracing starts in each pool process after the fork (the span exporter's thread would not survive it); off
# unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
worker_process_init.connect(lambda **_: start_worker_tracing(), weak=False)


@task_prerun.connect
def _bind_log_context(task_id: str | None = None, task=None, args=None, kwargs=None, **_: object) -> None:
    ctx = next((a for a in (*(args or ()), *(kwargs or {}).values()) if isinstance(a, dict) and "batch_id" in a),
               None)
    json_logging.bind(task_id=task_id, task=getattr(task, "name", None),
                      correlation_id=(ctx or {}).get("correlation_id"), batch_id=(ctx or {}).get("batch_id"),
                      is_replay=(ctx or {}).get("is_replay"))


@task_postrun.connect
def _unbind_log_context(**_: object) -> None:
    json_logging.bind()
