"""WakaTime compatibility: the heartbeat endpoints through the Flask test client, then the real WakaTime
command-line client (`wakatime==13.1.0` from PyPI) against a real HTTP server."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from werkzeug.serving import make_server

from app.compat_wakatime import WAKATIME_NAMESPACE, heartbeat_event_id, request_batch_id
from models.aggregation import aggregate_batch
from models.tables import ActivityBreakdown, Batch, MetricSlot
from models.tokens import create_token

BASE = "/api/compat/wakatime/v1/users/current"
BULK = f"{BASE}/heartbeats.bulk"
SINGLE = f"{BASE}/heartbeats"
TODAY = f"{BASE}/statusbar/today"


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def heartbeat(seconds_ago: float = 60.0, **fields: Any) -> dict[str, Any]:
    """A heartbeat as WakaTime plugins send it (null for the optional values they do not know)."""
    hb: dict[str, Any] = {
        "entity": "/home/dev/project/src/app.py",
        "type": "file",
        "category": "coding",
        "time": time.time() - seconds_ago,
        "project": "project",
        "branch": "main",
        "language": "Python",
        "lines": 120,
        "lineno": None,
        "cursorpos": None,
        "is_write": False,
        "dependencies": ["flask"],
        "user_agent": "wakatime/13.1.0 vscode/1.95.0 vscode-wakatime/24.0.0",
    }
    hb.update(fields)
    return hb


def query(db, sql: str, **params: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def heartbeat_rows(db) -> list[Any]:
    return query(db, "SELECT e.event_id, e.type, e.raw, e.corrected_ts, e.developer_id, b.source "
                     "FROM raw_events e JOIN batches b USING (batch_id) ORDER BY e.corrected_ts")


def statuses(response) -> list[int]:
    return [status for _, status in response.get_json()["responses"]]


# ------------------------------------------------------------------------------------------------- bulk endpoint


def test_bulk_answers_each_heartbeat_in_order_and_stores_the_valid_ones(client, make_token, clean_db):
    token = make_token("dev-1")
    valid = heartbeat(120, lineno=14, cursorpos=301, is_write=True, line_additions=3, line_deletions=1)
    debugging = heartbeat(60, category="debugging", entity="/home/dev/project/src/db.py", cursorpos="7")
    heartbeats = [
        valid,
        {"type": "file", "time": time.time()},  # no entity
        heartbeat(40 * 86400),  # 40 days old
        heartbeat(30, type="bogus"),
        42,  # not a heartbeat at all
        debugging,
    ]
    response = client.post(BULK, json=heartbeats, headers=basic(token))

    assert response.status_code == 201, response.get_json()
    entries = response.get_json()["responses"]
    assert statuses(response) == [201, 400, 400, 400, 400, 201]
    assert "payload.entity" in entries[1][0]["error"]
    assert "timestamp_too_old" in entries[2][0]["error"]
    assert "payload.type" in entries[3][0]["error"]
    assert entries[0][0]["data"]["id"] == str(heartbeat_event_id("dev-1", valid))
    assert entries[0][0]["data"]["entity"] == valid["entity"]

    rows = heartbeat_rows(clean_db)
    assert [r.event_id for r in rows] == [heartbeat_event_id("dev-1", hb) for hb in (valid, debugging)]
    assert {(r.type, r.source, r.developer_id) for r in rows} == {("editor.heartbeat", "wakatime", "dev-1")}
    # The heartbeat is the payload: unknown fields kept, WakaTime's nulls for optional counts dropped and its
    # numeric strings for counts made numbers.
    assert rows[0].raw["payload"] == valid
    assert rows[1].raw["payload"]["dependencies"] == ["flask"]
    assert "lineno" not in rows[1].raw["payload"]
    assert rows[1].raw["payload"]["cursorpos"] == 7  # the command-line client sends --cursorpos as a string
    # sent_at is the server's receive time, so clock-skew correction leaves `time` as it is.
    assert abs(rows[0].corrected_ts.timestamp() - valid["time"]) < 1e-3

    [batch] = query(clean_db, "SELECT batch_id, source, received, accepted, rejected FROM batches")
    assert (batch.source, batch.received, batch.accepted, batch.rejected) == ("wakatime", 6, 2, 4)
    assert batch.batch_id == request_batch_id("dev-1", heartbeats)


def test_resends_are_stored_once(client, make_token, clean_db):
    token = make_token("dev-1")
    first = [heartbeat(300), heartbeat(200, entity="/home/dev/project/README.md")]

    assert statuses(client.post(BULK, json=first, headers=basic(token))) == [201, 201]
    # The same request again (a plugin retrying after a timeout): the same batch, answered 201 per heartbeat.
    assert statuses(client.post(BULK, json=first, headers=basic(token))) == [201, 201]
    # The offline queue resends one of them beside a new one, in another request.
    again = [first[1], heartbeat(100)]
    assert statuses(client.post(BULK, json=again, headers=basic(token))) == [201, 201]
    # The same heartbeat twice in one request.
    assert statuses(client.post(BULK, json=[first[0], first[0]], headers=basic(token))) == [201, 201]

    rows = heartbeat_rows(clean_db)
    assert len(rows) == 3
    assert len({r.event_id for r in rows}) == 3
    assert len(query(clean_db, "SELECT 1 FROM batches")) == 3


def test_event_id_is_a_uuid5_of_the_heartbeats_identity():
    hb = heartbeat(10, time=1_700_000_000)
    same_but_float = {**hb, "time": 1_700_000_000.0, "lines": 999, "lineno": 3}  # counts are not identity
    assert heartbeat_event_id("dev-1", hb) == heartbeat_event_id("dev-1", same_but_float)
    assert heartbeat_event_id("dev-1", hb).version == 5
    assert heartbeat_event_id("dev-2", hb) != heartbeat_event_id("dev-1", hb)
    assert heartbeat_event_id("dev-1", {**hb, "is_write": True}) != heartbeat_event_id("dev-1", hb)
    assert heartbeat_event_id("dev-1", {**hb, "time": 1_700_000_000.5}) != heartbeat_event_id("dev-1", hb)
    name = ('heartbeat:["dev-1","/home/dev/project/src/app.py","file","coding","project","main","Python",'
            'false,1700000000.0]')
    assert heartbeat_event_id("dev-1", hb) == uuid.uuid5(WAKATIME_NAMESPACE, name)


def test_all_invalid_is_still_201_with_every_entry_400_and_nothing_stored(client, make_token, clean_db):
    token = make_token("dev-1")
    response = client.post(BULK, json=[heartbeat(40 * 86400), {"entity": "x"}, "nope"], headers=basic(token))
    assert response.status_code == 201
    assert statuses(response) == [400, 400, 400]
    assert query(clean_db, "SELECT 1 FROM batches") == []


@pytest.mark.parametrize(("body", "code"), [
    ({"entity": "x"}, "invalid_heartbeats"),
    ("[1, 2", "invalid_json"),
])
def test_bulk_body_must_be_a_json_array(client, make_token, clean_db, body, code):
    token = make_token("dev-1")
    if isinstance(body, str):
        response = client.post(BULK, data=body, content_type="application/json", headers=basic(token))
    else:
        response = client.post(BULK, json=body, headers=basic(token))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


def test_empty_bulk_is_an_empty_answer(client, make_token, clean_db):
    response = client.post(BULK, json=[], headers=basic(make_token("dev-1")))
    assert (response.status_code, response.get_json()) == (201, {"responses": []})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
odd_heartbeats = st.one_of(
    json_values,
    st.fixed_dictionaries({"entity": st.text(max_size=5) | json_values, "time": json_values},
                          optional={k: json_values for k in ("type", "category", "is_write", "lineno", "project")}),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(heartbeats=st.lists(odd_heartbeats, min_size=1, max_size=6))
def test_any_json_array_gets_one_entry_per_heartbeat_and_never_a_5xx(client, make_token, clean_db, heartbeats):
    token = make_token("dev-fuzz")
    try:
        json.dumps(heartbeats, allow_nan=False)
        expected = 201
    except ValueError:  # NaN/Infinity are not JSON: the body reader refuses the request as a whole
        expected = 400
    body = json.dumps(heartbeats)
    response = client.post(BULK, data=body, content_type="application/json", headers=basic(token))
    assert response.status_code == expected, response.get_json()
    if expected == 201:
        entries = response.get_json()["responses"]
        assert len(entries) == len(heartbeats)
        assert all(status in (201, 400) for _, status in entries)


# ----------------------------------------------------------------------------------------------- single endpoint


def test_single_heartbeat(client, make_token, clean_db):
    token = make_token("dev-1")
    hb = heartbeat(30)
    response = client.post(SINGLE, json=hb, headers=basic(token))
    assert response.status_code == 201
    assert response.get_json()["data"]["id"] == str(heartbeat_event_id("dev-1", hb))
    # A resend is also 201 (the client drops it from its queue); stored once.
    assert client.post(SINGLE, json=hb, headers=basic(token)).status_code == 201
    assert len(heartbeat_rows(clean_db)) == 1

    bad = client.post(SINGLE, json=heartbeat(30, time="yesterday"), headers=basic(token))
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "invalid_heartbeat"
    assert bad.get_json()["error"]["details"][0]["field"] == "payload.time"
    not_object = client.post(SINGLE, json=[hb], headers=basic(token))
    assert (not_object.status_code, not_object.get_json()["error"]["code"]) == (400, "invalid_heartbeat")
    assert len(heartbeat_rows(clean_db)) == 1


# -------------------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("header", [basic, bearer, lambda t: basic(t + ":")], ids=["basic", "bearer", "basic-user"])
def test_basic_and_bearer_tokens_are_accepted(client, make_token, clean_db, header):
    response = client.post(BULK, json=[heartbeat()], headers=header(make_token("dev-7")))
    assert statuses(response) == [201]
    assert [r.developer_id for r in heartbeat_rows(clean_db)] == ["dev-7"]


@pytest.mark.parametrize("headers", [{}, basic("dp_not-a-token"), bearer("dp_not-a-token"),
                                     {"Authorization": "Basic !!!"}], ids=["none", "basic", "bearer", "garbage"])
def test_bad_or_missing_token_is_401(client, clean_db, headers):
    for path in (BULK, SINGLE):
        response = client.post(path, json=[heartbeat()] if path == BULK else heartbeat(), headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] in ("missing_token", "invalid_token")
    assert client.get(TODAY, headers=headers).status_code == 401
    assert heartbeat_rows(clean_db) == []


def test_admin_token_is_403(client, make_token, clean_db):
    token = make_token(None, admin=True)
    response = client.post(BULK, json=[heartbeat()], headers=basic(token))
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "developer_token_required")
    assert client.get(TODAY, headers=basic(token)).status_code == 403


# ---------------------------------------------------------------------------------------------- statusbar/today


def test_statusbar_today_shows_todays_active_time(client, make_token, clean_db):
    token = make_token("dev-1")
    empty = client.get(TODAY, headers=basic(token)).get_json()["data"]
    assert empty["grand_total"] == {"decimal": "0.00", "digital": "0:00", "hours": 0, "minutes": 0,
                                    "text": "0 secs", "total_seconds": 0.0}

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    metrics = {"events": 10, "edits": 0, "lines_added": 0, "lines_deleted": 0, "saves": 0, "error_events": 0,
               "builds": 0, "build_failures": 0, "tests_passed": 0, "tests_failed": 0, "debug_us": 0,
               "typed_chars": 0, "ai_chars_inserted": 0, "commits": 0}
    with clean_db.transaction() as s:
        # Today: 90 minutes over six slots (3,600 s Python, 1,800 s Go); yesterday and another developer apart.
        for i in range(6):
            s.add(MetricSlot(developer_id="dev-1", slot_start=today + timedelta(minutes=15 * i),
                             active_us=900_000_000, **metrics))
            s.add(ActivityBreakdown(developer_id="dev-1", slot_start=today + timedelta(minutes=15 * i),
                                    dimension="language", key="python" if i < 4 else "go", active_us=900_000_000))
        s.add(MetricSlot(developer_id="dev-1", slot_start=today - timedelta(days=1), active_us=600_000_000,
                         **metrics))
        s.add(MetricSlot(developer_id="dev-2", slot_start=today, active_us=60_000_000, **metrics))
    response = client.get(TODAY, headers=bearer(token))
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["grand_total"] == {"decimal": "1.50", "digital": "1:30", "hours": 1, "minutes": 30,
                                   "text": "1 hr 30 mins", "total_seconds": 5400.0}
    assert data["categories"] == [] and data["is_up_to_date"] is True
    assert [(x["name"], x["total_seconds"], x["percent"]) for x in data["languages"]] == [
        ("python", 3600.0, 66.67), ("go", 1800.0, 33.33)]
    assert data["range"]["date"] == today.date().isoformat()
    assert client.get(TODAY, headers=basic(make_token("dev-2"))).get_json()["data"]["grand_total"]["text"] == "1 min"


def test_heartbeats_feed_the_metrics_and_the_statusbar(client, make_token, clean_db):
    """Stored heartbeats are ordinary events for the metric job: active time, and debug time for "debugging"."""
    token = make_token("dev-1")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = max(time.time() - 150, today.timestamp() + 1)  # all five on today's UTC day
    categories = ["coding", "coding", "debugging", "debugging", "coding"]
    beats = [heartbeat(0, time=t0 + 30 * i, category=c) for i, c in enumerate(categories)]
    assert statuses(client.post(BULK, json=beats, headers=basic(token))) == [201] * 5

    with clean_db.transaction() as s:  # what the aggregation job does for the stored batch
        [stored] = s.scalars(select(Batch).where(Batch.developer_id == "dev-1")).all()
        aggregate_batch(s, stored, idle_timeout_seconds=300)
    [day] = query(clean_db, "SELECT sum(active_us) AS active_us, sum(debug_us) AS debug_us, sum(events) AS events"
                            " FROM metric_slots WHERE slot_start >= :d", d=today)
    assert (day.events, day.active_us, day.debug_us) == (5, 120_000_000, 30_000_000)
    grand_total = client.get(TODAY, headers=basic(token)).get_json()["data"]["grand_total"]
    assert grand_total["total_seconds"] == pytest.approx(120)
    assert grand_total["text"] == "2 mins"


# ------------------------------------------------------------------------- the real WakaTime command-line client

# wakatime 13.1.0 vendors urllib3/requests from before Python 3.10 removed the collections ABC aliases
# (`from collections import Mapping`), so on 3.11 it cannot even start. The shim restores the aliases and
# then runs the client's own entry point, unchanged.
WAKATIME_SHIM = """
import collections, collections.abc, sys
for name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Set", "MutableSet", "Callable",
             "Iterable"):
    setattr(collections, name, getattr(collections.abc, name))
from wakatime.main import execute
sys.exit(execute(sys.argv[1:]))
"""

needs_wakatime = pytest.mark.skipif(importlib.util.find_spec("wakatime") is None,
                                    reason="the wakatime==13.1.0 client is not installed (pip install -e '.[dev]')")


class LiveServer:
    """The app on a real threaded HTTP server that can be stopped and restarted on the same port."""

    def __init__(self, app) -> None:
        self.app = app
        self.port = 0
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="wakatime-live-server", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self.thread is not None
            self.thread.join(timeout=5)
            self.server = None


@pytest.fixture
def live(app) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def wakatime_key(clean_db) -> str:
    """An ordinary developer token: tokens are UUIDv4s, the only api key form wakatime 13.1.0 accepts."""
    with clean_db.transaction() as s:
        return create_token(s, "dev-waka", label="wakatime")


class WakaTimeCli:
    def __init__(self, home: Path, key: str, port: int) -> None:
        self.home, self.key, self.port = home, key, port
        self.config = home / ".wakatime.cfg"
        self.config.write_text("[settings]\ndebug = true\noffline = true\n")
        self.project = home / "project"
        self.project.mkdir()
        self.env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.env.update(HOME=str(home), WAKATIME_HOME=str(home), NO_PROXY="127.0.0.1,localhost")

    def file(self, name: str) -> str:
        path = self.project / name
        path.write_text("import os\n\nprint(os.getcwd())\n")
        return str(path)

    def send(self, entity: str, at: float, *extra: str) -> subprocess.CompletedProcess[str]:
        url = f"http://127.0.0.1:{self.port}/api/compat/wakatime/v1/users/current/heartbeats.bulk"
        args = [sys.executable, "-c", WAKATIME_SHIM, "--key", self.key, "--entity", entity, "--time", repr(at),
                "--plugin", "vscode/1.95.0 vscode-wakatime/24.0.0", "--config", str(self.config),
                "--api-url", url, "--project", "project", "--language", "Python", "--timeout", "10",
                "--log-file", str(self.home / "wakatime.log"), "--verbose", *extra]
        return subprocess.run(args, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=60,
                              check=False)

    def queued(self) -> int:
        db = self.home / ".wakatime.db"
        if not db.exists():
            return 0
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT count(*) FROM heartbeat_2").fetchone()[0]
        except sqlite3.OperationalError:  # the table is created on the first queued heartbeat
            return 0
        finally:
            conn.close()

    def log(self) -> str:
        path = self.home / "wakatime.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def cli(tmp_path, wakatime_key, live) -> WakaTimeCli:
    return WakaTimeCli(tmp_path, wakatime_key, live.port)


def _ok(result: subprocess.CompletedProcess[str], cli: WakaTimeCli) -> None:
    assert result.returncode == 0, f"wakatime exited {result.returncode}\n{result.stdout}{result.stderr}\n{cli.log()}"


@needs_wakatime
def test_wakatime_cli_heartbeats_land_and_resends_deduplicate(cli, clean_db):
    app_py, readme = cli.file("app.py"), cli.file("README.md")
    t0 = time.time() - 120
    _ok(cli.send(app_py, t0, "--write", "--lineno", "3", "--cursorpos", "12"), cli)
    _ok(cli.send(readme, t0 + 30, "--category", "debugging"), cli)
    _ok(cli.send(app_py, t0), cli)  # not a write: another heartbeat
    _ok(cli.send(app_py, t0, "--write", "--lineno", "3", "--cursorpos", "12"), cli)  # a resend of the first

    rows = heartbeat_rows(clean_db)
    assert len(rows) == 3, cli.log()
    assert {(r.type, r.source, r.developer_id) for r in rows} == {("editor.heartbeat", "wakatime", "dev-waka")}
    payloads = sorted((r.raw["payload"] for r in rows), key=lambda p: (p["time"], p["entity"], p["is_write"]))
    # 13.1.0 sends category null unless --category is given (WakaTime's API reads null as "coding").
    assert [(Path(p["entity"]).name, p["is_write"], p["category"]) for p in payloads] == [
        ("app.py", False, None), ("app.py", True, None), ("README.md", False, "debugging")]
    assert payloads[1]["lineno"] == 3 and payloads[1]["project"] == "project"
    assert "wakatime/13.1.0" in payloads[1]["user_agent"]
    assert cli.queued() == 0


@needs_wakatime
def test_wakatime_cli_offline_queue_drains_after_an_outage(cli, live, clean_db):
    files = [cli.file(f"m{i}.py") for i in range(3)]
    t0 = time.time() - 300
    _ok(cli.send(files[0], t0), cli)
    assert len(heartbeat_rows(clean_db)) == 1

    live.stop()
    for i, path in enumerate(files):
        cli.send(path, t0 + 10 * (i + 1))  # exits non-zero: the API is unreachable
    assert cli.queued() == 3
    assert len(heartbeat_rows(clean_db)) == 1

    live.start()  # the same port
    _ok(cli.send(files[0], t0 + 100), cli)  # sends this one, then the offline queue
    assert cli.queued() == 0, cli.log()
    rows = heartbeat_rows(clean_db)
    assert [r.raw["payload"]["time"] for r in rows] == pytest.approx(
        [t0, t0 + 10, t0 + 20, t0 + 30, t0 + 100], abs=1e-3)
    assert {r.source for r in rows} == {"wakatime"}
