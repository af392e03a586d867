"""The TypeScript client (clients/typescript) against a real devpulse server, through Node's own test runner.

`make test` runs pytest, so this wrapper is how the Node tests run in the suite: it serves the app on a real
threaded HTTP server on 127.0.0.1, runs `node --test clients/typescript/test/` with DEVPULSE_URL, DEVPULSE_TOKEN
and DEVPULSE_DEVELOPER, and then checks that exactly the events the Node tests expect stored are in raw_events.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
NODE = shutil.which("node")
DEVELOPER = "dev-ts-client"


def _node_major() -> int:
    if NODE is None:
        return 0
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    try:
        return int(out.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


@pytest.mark.skipif(NODE is None, reason="node is not installed; the TypeScript client's tests need Node >= 20")
def test_typescript_client_against_a_real_server(app, make_token, clean_db, tmp_path):
    if _node_major() < 20:
        pytest.skip("the TypeScript client's tests need Node >= 20 (node --test with a directory, global fetch)")
    assert (CLIENT / "dist" / "client.js").is_file(), "clients/typescript/dist is missing: run `npm run build` there"
    token = make_token(DEVELOPER)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ts-client-live-server", daemon=True)
    thread.start()
    record = tmp_path / "expected_event_ids.txt"
    record.touch()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(DEVPULSE_URL=f"http://127.0.0.1:{server.server_port}", DEVPULSE_TOKEN=token,
               DEVPULSE_DEVELOPER=DEVELOPER, DEVPULSE_RECORD_FILE=str(record), NO_PROXY="127.0.0.1,localhost")
    try:
        result = subprocess.run([NODE, "--test", "clients/typescript/test/"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    print(result.stdout)  # the TAP report, shown by `pytest -rP`
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "# skipped 0" in result.stdout, result.stdout  # every server test ran
    expected = set(record.read_text().split())
    assert len(expected) >= 10
    with clean_db.engine.connect() as conn:
        stored = [str(r[0]) for r in conn.execute(
            text("SELECT event_id FROM raw_events WHERE developer_id = :d"), {"d": DEVELOPER})]
    assert len(stored) == len(set(stored))
    assert set(stored) == expected
