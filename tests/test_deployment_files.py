"""The deployment files say what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_procfile_has_every_process():
    procs = _procfile()
    assert set(procs) == {"release", "web", "worker", "beat", "flower"}
    assert "alembic upgrade head" in procs["release"]
    assert "gunicorn" in procs["web"] and "app:create_app()" in procs["web"]
    queues = re.search(r"-Q\s+(\S+)", procs["worker"])
    assert queues and set(queues.group(1).split(",")) == {"aggregation", "normalization", "danger", "pipeline",
                                                          "maintenance"}
    assert "--basic-auth" in procs["flower"]


def test_procfile_queues_match_the_celery_app():
    from tasks.celery_app import QUEUES

    worker = _procfile()["worker"]
    assert set(re.search(r"-Q\s+(\S+)", worker).group(1).split(",")) == set(QUEUES)


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="the docker CLI with the compose plugin is not installed")
def test_docker_compose_config_validates():
    result = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_docker_compose_declares_the_services_with_health_checks():
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("postgres", "redis", "migrate", "web", "worker", "beat", "flower"):
        assert re.search(rf"^  {service}:", text, re.M), service
    assert text.count("healthcheck:") >= 3
    assert re.search(r"^volumes:", text, re.M)


def test_flower_has_no_default_password() -> None:
    """The Procfile and compose refuse to start Flower without FLOWER_BASIC_AUTH (no admin:devpulse default)."""
    import subprocess

    procfile = (ROOT / "Procfile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "admin:devpulse" not in procfile + compose
    assert "${FLOWER_BASIC_AUTH:?" in procfile and "${FLOWER_BASIC_AUTH:?" in compose
    flower = next(line for line in procfile.splitlines() if line.startswith("flower:"))
    # The shell expansion itself fails, naming the variable, before celery is even run.
    probe = flower.split(":", 1)[1].replace("celery -A tasks flower", "true")
    result = subprocess.run(["sh", "-c", probe], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0 and "FLOWER_BASIC_AUTH" in result.stderr


def test_compose_has_an_optional_trace_viewer_and_passes_the_endpoint_on():
    """`--profile tracing` adds Jaeger; web and workers get OTEL_EXPORTER_OTLP_ENDPOINT (empty: tracing off)."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jaeger = compose["services"]["jaeger"]
    assert jaeger["profiles"] == ["tracing"] and "all-in-one" in jaeger["image"]
    for service in ("web", "worker"):
        assert compose["services"][service]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == \
            "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert all("profiles" not in spec for name, spec in compose["services"].items() if name != "jaeger")


def test_every_way_of_running_the_web_serves_as_the_procfile_does():
    """The Procfile, the Dockerfile, compose, make bench and the fault tests run gunicorn with the same worker
    arguments (the bench measures what production runs), and streams can never take every thread."""
    import inspect

    from app.serving import GUNICORN_WORKER_ARGS, WEB_THREADS
    from bench.stack import Stack
    from core.settings import Settings
    from tests.faults.harness import FaultStack

    web = _procfile()["web"]
    assert " ".join(GUNICORN_WORKER_ARGS) in web
    quoted = ", ".join(f'"{a}"' for a in GUNICORN_WORKER_ARGS)
    assert quoted in (ROOT / "Dockerfile").read_text()
    compose = re.sub(r"\s+", " ", (ROOT / "docker-compose.yml").read_text())
    assert quoted in compose
    stack = Stack.__new__(Stack)
    stack.web_workers, stack.web_threads = 2, 4
    argv = stack._gunicorn("app:create_app()", 1)
    assert " ".join(GUNICORN_WORKER_ARGS) in " ".join(argv)
    assert inspect.signature(FaultStack.start_web).parameters["serving"].default == GUNICORN_WORKER_ARGS
    defaults = Settings()
    assert defaults.stream_max_per_process + defaults.web_request_slots < WEB_THREADS
