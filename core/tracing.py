"""Distributed tracing (OpenTelemetry): on only when an OTLP endpoint is configured.

Off (OTEL_EXPORTER_OTLP_ENDPOINT unset, the default) nothing of OpenTelemetry is even imported: no library is
instrumented, no span is made, no trace header rides on a broker message, logs and audit records carry no
trace id. What remains on the hot path is the module-level boolean that the helpers below test first.

On, the maintained instrumentations trace the libraries themselves: psycopg2 statements, Redis commands and
outbound urllib requests here (any process); Flask requests (app/tracing.py) and Celery publishes and task runs
(tasks/tracing.py), whose trace context travels in the task messages' headers. What crosses the outbox, where a
record may be published later by another process (the relay), is the W3C `traceparent` stored on the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER_NAME = "devpulse"

_on = False
# The instrumentors this process installed (undone by `stop`), and the exporters already attached.
# (Instrumentors typed Any: mypy does not resolve the instrumentation package's BaseInstrumentor.)
_instrumentors: list[Any] = []
_exporters: list[Any] = []


def enabled() -> bool:
    return _on


def start(service_name: str, *, endpoint: str = "", exporter: SpanExporter | None = None) -> bool:
    """Install tracing in this process: spans go over OTLP/HTTP to `endpoint` (its base URL, as in
    OTEL_EXPORTER_OTLP_ENDPOINT), or to `exporter` (the tests' in-memory one). Neither: stays off. Returns
    whether tracing is on. Call it after any fork (gunicorn and Celery's prefork pool fork after import): the
    batch exporter's thread does not survive one."""
    global _on
    if _on:
        return True
    if not endpoint and exporter is None:
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # One provider per process (OpenTelemetry allows setting it once); a web app and a worker in one test
        # process share it.
        provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                            "service.namespace": "devpulse"}))
        trace.set_tracer_provider(provider)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=endpoint.rstrip("/") + "/v1/traces")))
    elif exporter not in _exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exporters.append(exporter)
    for instrumentor in (Psycopg2Instrumentor(), RedisInstrumentor(), URLLibInstrumentor()):
        instrument(instrumentor)
    _on = True
    return True


def instrument(instrumentor: Any, **options: Any) -> None:
    """Install one maintained instrumentation (once per process; `stop` undoes it)."""
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(**options)
        _instrumentors.append(instrumentor)


def stop() -> None:
    """Undo `start` in this process (the tests, which share one process with untraced tests)."""
    global _on
    _on = False
    while _instrumentors:
        _instrumentors.pop().uninstrument()


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None: tracing off, or no span is current."""
    if not _on:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def trace_fields() -> dict[str, str]:
    """{"trace_id": ...} to merge into a log line's or audit record's fields; empty when there is none."""
    trace_id = current_trace_id()
    return {"trace_id": trace_id} if trace_id is not None else {}


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to continue this trace from another process later."""
    if not _on:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def batch_attributes(ctx: dict[str, Any]) -> dict[str, Any]:
    """A batch's span attributes, from the context its jobs receive (models/outbox.py dispatch_context)."""
    return {"batch.id": str(ctx["batch_id"]), "developer.id": str(ctx["developer_id"]),
            "correlation_id": str(ctx["correlation_id"]), "is_replay": bool(ctx.get("is_replay"))}


def execution_attributes(ctx: dict[str, Any]) -> dict[str, Any]:
    """An automation execution's span attributes (for the step tasks to come; see tasks/tracing.py)."""
    attributes = {"execution.id": str(ctx["execution_id"]), "is_replay": bool(ctx.get("is_replay"))}
    for key, name in (("workflow_id", "workflow.id"), ("step", "step.name"), ("correlation_id", "correlation_id"),
                      ("developer_id", "developer.id")):
        if ctx.get(key) is not None:
            attributes[name] = str(ctx[key])
    return attributes


def annotate_batch(ctx: dict[str, Any]) -> None:
    """Set a batch's attributes on the current span (nothing, not even the dict, when tracing is off)."""
    if _on:
        annotate(batch_attributes(ctx))


def annotate(attributes: dict[str, Any]) -> None:
    """Set attributes on the current span (nothing when tracing is off)."""
    if not _on:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


# What `span` returns while tracing is off: reusable, so the off path makes no generator per call.
_NO_SPAN = nullcontext()


def span(name: str, *, traceparent: str | None = None) -> AbstractContextManager[None]:
    """A span of our own around a block (nothing when tracing is off).

    With `traceparent`, the span continues that trace (the request that wrote an outbox record), and the span
    current here, if any (the relay's task run), is kept as a link rather than the parent."""
    return _span(name, traceparent) if _on else _NO_SPAN


@contextmanager
def _span(name: str, traceparent: str | None) -> Iterator[None]:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer = trace.get_tracer(TRACER_NAME)
    if traceparent is None:
        with tracer.start_as_current_span(name):
            yield
        return
    here = trace.get_current_span().get_span_context()
    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    with tracer.start_as_current_span(name, context=parent,
                                      links=[trace.Link(here)] if here.is_valid else None):
        yield
