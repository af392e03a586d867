"""Flower started before any worker exists (as `make run` and compose start it) logs no meaningless
"Inspect method ... failed" warnings (flowerconfig.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from devstack.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
CELERY = ROOT / ".venv" / "bin" / "celery"


def test_flower_without_a_worker_yet_starts_quietly(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        flower = subprocess.Popen(
            [str(CELERY) if CELERY.exists() else "celery", "-A", "tasks", "flower", "--address=127.0.0.1",
             f"--port={port}", "--basic-auth=u:p"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        time.sleep(4)  # Flower's first round of inspect calls (1 s timeout each) is over by now
        text = log.read_text(errors="replace")
        assert "Visit me at" in text, text
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(20)
    assert "Inspect method" not in text, text
