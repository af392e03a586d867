"""Prometheus metrics recorded by the workers (merged into the web's /metrics in multiprocess mode)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

TASK_OUTCOMES = Counter("devpulse_task_outcomes_total", "Pipeline job outcomes", ["job", "outcome"])
PIPELINE_LATENCY = Histogram(
    "devpulse_pipeline_latency_seconds", "From the batch's receipt to its completion (first processing only)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def observe_completion(received_at_iso: str | None, is_replay: bool) -> None:
    if not received_at_iso or is_replay:
        return
    received = datetime.fromisoformat(received_at_iso)
    PIPELINE_LATENCY.observe(max(0.0, (datetime.now(UTC) - received).total_seconds()))
