"""Tracing of the web process (see core/tracing.py): Flask requests and the publishes of the batches' chords."""

from __future__ import annotations

from flask import Flask

from core import tracing
from core.settings import Settings

# Probes and scrapes would be most of the traces and tell nothing about a batch.
UNTRACED_URLS = "healthz,readyz,metrics"


def init_app(app: Flask, settings: Settings) -> None:
    """Instrument this app if tracing is on (an OTLP endpoint is set, or a test started it); else nothing."""
    if not tracing.start("devpulse-web", endpoint=settings.otel_exporter_otlp_endpoint):
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from tasks.tracing import instrument_celery

    FlaskInstrumentor().instrument_app(app, excluded_urls=UNTRACED_URLS)
    instrument_celery()
