"""Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (then no instrumentation is even imported and no tracer
provider installed), and on, it exports over OTLP/HTTP: checked in fresh processes, against a local server that
decodes the protobuf. (redis-py imports OpenTelemetry's metrics API itself when it is installed: not ours.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# A web app and a worker process's start-up, then a request; prints the instrumentations and tracing SDK modules
# loaded.
_PROGRAM = """
import sys
from app import create_app
from tasks.tracing import start_worker_tracing
app = create_app({"database_url": "postgresql://nobody@127.0.0.1:9/none", "redis_url": "redis://127.0.0.1:9/0"})
start_worker_tracing()
assert app.test_client().get("/no-such-page").status_code == 404
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.instrumentation", "opentelemetry.sdk.trace"))))
"""


def _run(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env, LOG_JSON="0")
    proc = subprocess.run([sys.executable, "-c", _PROGRAM], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_off_by_default_nothing_is_imported_or_instrumented():
    assert _run().strip() == "[]"


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_on_when_the_endpoint_is_set_spans_go_over_otlp():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loaded = _run(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert "opentelemetry.instrumentation.flask" in loaded and "opentelemetry.instrumentation.celery" in loaded
    assert _Collector.received and {path for path, _ in _Collector.received} == {"/v1/traces"}
    spans = []
    for _, body in _Collector.received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            spans += [(service, span.name, span.kind) for scope in resource_spans.scope_spans for span in scope.spans]
    assert ("devpulse-web", "GET /no-such-page", 2) in spans, spans  # kind 2: SERVER
