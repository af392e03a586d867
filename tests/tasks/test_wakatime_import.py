"""Importing a WakaTime data export: a realistic generated export (several days, thousands of heartbeats, a few
malformed ones), through the CLI and through the upload endpoint with a real worker; exactly-once against a
second import and against the same heartbeats sent live; a resumed crashed job; a streaming, memory-flat read."""

from __future__ import annotations

import base64
import io
import json
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from activity.wakatime_mapping import heartbeat_event_id
from app.settings import EXTENSION_KEY
from app.wakatime_import import read_export, run_import
from models.tables import Batch, ImportJob, RawEvent

DAYS = 4
PER_DAY = 800
NOW = time.time()
# Older than MAX_EVENT_AGE_DAYS (30): live ingest refuses them, an import takes them.
FIRST_DAY = NOW - 45 * 86400
BAD_POSITIONS = {(0, 5), (1, 0), (1, 400), (2, 799), (3, 100)}


def heartbeat(t: float, i: int) -> dict[str, Any]:
    """A heartbeat as WakaTime's export holds it: the plugin's fields plus WakaTime's own ids."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hb:{t}:{i}")),
        "entity": f"/home/dev/project/src/module_{i % 23}.py",
        "type": "file",
        "category": "coding" if i % 11 else "debugging",
        "time": t,
        "project": "project" if i % 3 else "other",
        "branch": "main",
        "language": "Python" if i % 5 else "Markdown",
        "is_write": i % 7 == 0,
        "lines": 100 + i % 50,
        "lineno": i % 90 + 1,
        "cursorpos": None,
        "dependencies": ["flask"],
        "created_at": datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z"),
        "user_agent_id": "9f6b1f0e-1c1e-4a4e-9d1d-0f1b2c3d4e5f",
        "machine_name_id": "0a1b2c3d-4e5f-4a4e-9d1d-0f1b2c3d4e5f",
    }


def malformed(day: int, index: int, t: float) -> Any:
    return {
        (0, 5): {"entity": "/x.py", "type": "file", "category": "coding"},            # no time
        (1, 0): "not a heartbeat",
        (1, 400): {**heartbeat(t, index), "time": "yesterday"},
        (2, 799): {**heartbeat(t, index), "time": NOW + 10 * 86400},                  # in the future
        (3, 100): {**heartbeat(t, index), "time": NOW - 4000 * 86400},                # beyond IMPORT_MAX_AGE_DAYS
    }[(day, index)]


def export(days: int = DAYS, per_day: int = PER_DAY, bad: set[tuple[int, int]] = BAD_POSITIONS) -> dict[str, Any]:
    out = []
    for day in range(days):
        start = FIRST_DAY + day * 86400
        beats = [malformed(day, i, start + i * 30) if (day, i) in bad else heartbeat(start + i * 30, i)
                 for i in range(per_day)]
        out.append({"date": datetime.fromtimestamp(start, UTC).date().isoformat(), "heartbeats": beats})
    return {"user": {"id": "u", "username": "dev"}, "range": {"start": out[0]["date"], "end": out[-1]["date"]},
            "days": out}


def good_heartbeats(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [hb for d, day in enumerate(data["days"]) for i, hb in enumerate(day["heartbeats"])
            if (d, i) not in BAD_POSITIONS]


@pytest.fixture
def import_app(app, tmp_path):
    """The suite's app (its IMPORT_DIR is the test's own directory, see tests/conftest.py)."""
    assert Path(app.extensions[EXTENSION_KEY].import_dir).is_relative_to(tmp_path)
    return app


@pytest.fixture
def export_file(tmp_path) -> tuple[Path, dict[str, Any]]:
    data = export()
    path = tmp_path / "wakatime-export.json"
    path.write_text(json.dumps(data))
    return path, data


def stored_events(db, developer_id: str = "dev-1") -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(RawEvent).where(RawEvent.developer_id == developer_id))


def cli_import(app, *args: str) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(args=["data", "import-wakatime", *args])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_cli_imports_a_realistic_export_reporting_malformed_heartbeats(import_app, clean_db, export_file):
    path, data = export_file
    job = cli_import(import_app, str(path), "--developer", "dev-1")
    total = DAYS * PER_DAY
    assert job["status"] == "done" and job["progress"] == 1.0
    assert (job["read"], job["accepted"], job["duplicates"], job["rejected"]) == (total, total - 5, 0, 5)
    assert job["batches_done"] == (total + 999) // 1000
    assert {(e["day_index"], e["heartbeat_index"]) for e in job["errors"]} == BAD_POSITIONS
    codes = {(e["day_index"], e["heartbeat_index"]): e["code"] for e in job["errors"]}
    # The age rules still apply: IMPORT_MAX_AGE_DAYS instead of MAX_EVENT_AGE_DAYS, and nothing in the future.
    assert (codes[(3, 100)], codes[(2, 799)]) == ("timestamp_too_old", "timestamp_in_future")
    assert all(e["date"] == data["days"][e["day_index"]]["date"] for e in job["errors"])
    assert stored_events(clean_db) == total - 5
    # Every stored id is the WakaTime endpoint's id for that heartbeat; batches at most 1000 events.
    with clean_db.transaction() as s:
        ids = set(s.scalars(select(RawEvent.event_id).where(RawEvent.developer_id == "dev-1")))
        sizes = s.scalars(select(Batch.received).where(Batch.developer_id == "dev-1")).all()
    assert ids == {heartbeat_event_id("dev-1", hb) for hb in good_heartbeats(data)}
    assert max(sizes) <= 1000

    # Importing the same file again stores nothing new.
    again = cli_import(import_app, str(path), "--developer", "dev-1")
    assert (again["status"], again["accepted"], again["duplicates"], again["rejected"]) == (
        "done", 0, total - 5, 5)
    assert stored_events(clean_db) == total - 5


def test_heartbeats_sent_live_and_imported_are_stored_once(import_app, clean_db, make_token, tmp_path):
    token = make_token("dev-1")
    auth = {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    recent = NOW - 2 * 86400  # within MAX_EVENT_AGE_DAYS, so the live endpoint takes them
    live = [{k: v for k, v in heartbeat(recent + i * 30, i).items()
             if k not in ("id", "created_at", "user_agent_id", "machine_name_id")} for i in range(300)]
    r = import_app.test_client().post("/api/compat/wakatime/v1/users/current/heartbeats.bulk", json=live,
                                      headers=auth)
    assert r.status_code == 201, r.get_json()
    assert stored_events(clean_db) == 300
    # The export holds the same 300 heartbeats (with WakaTime's extra fields) and 200 more.
    data = {"user": {}, "range": {}, "days": [
        {"date": "d", "heartbeats": [heartbeat(recent + i * 30, i) for i in range(500)]}]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(data))
    job = cli_import(import_app, str(path), "--developer", "dev-1")
    assert (job["accepted"], job["duplicates"], job["rejected"]) == (200, 300, 0)
    assert stored_events(clean_db) == 500
    # ... and the live endpoint's own ids were not changed by moving the mapping.
    with clean_db.transaction() as s:
        ids = set(s.scalars(select(RawEvent.event_id)))
    assert heartbeat_event_id("dev-1", live[0]) in ids


def test_live_ingest_still_refuses_what_only_imports_accept(import_app, make_token):
    token = make_token("dev-1")
    auth = {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    r = import_app.test_client().post("/api/compat/wakatime/v1/users/current/heartbeats",
                                      json=heartbeat(FIRST_DAY, 1), headers=auth)
    assert r.status_code == 400, r.get_json()


class Crash(BaseException):
    """A worker dying mid-job (not an Exception: nothing in the job catches it)."""


def test_a_crashed_job_resumes_without_storing_or_counting_twice(import_app, clean_db, export_file, monkeypatch):
    import app.wakatime_import as module

    path, _ = export_file
    with clean_db.transaction() as s:
        job_id = uuid.uuid4()
        s.add(ImportJob(id=job_id, developer_id="dev-1", source="wakatime", file_path=str(path),
                        file_bytes=path.stat().st_size, status="pending"))
    cfg = import_app.extensions[EXTENSION_KEY]
    calls = {"n": 0}
    real = module.persist_batch

    def crash_on_third(session, prepared, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash
        return real(session, prepared, **kw)

    monkeypatch.setattr(module, "persist_batch", crash_on_third)
    with pytest.raises(Crash):
        run_import(clean_db, None, cfg, job_id)
    with clean_db.transaction() as s:
        job = s.get(ImportJob, job_id)
        assert (job.status, job.batches_done, job.read) == ("running", 2, 2000)
    monkeypatch.setattr(module, "persist_batch", real)
    resumed = cli_import(import_app, "--resume", str(job_id))
    assert resumed["status"] == "done"
    total = DAYS * PER_DAY
    with clean_db.transaction() as s:
        job = s.get(ImportJob, job_id)
        assert (job.status, job.read, job.accepted, job.rejected) == ("done", total, total - 5, 5)
        assert len(job.errors) == 5
    assert stored_events(clean_db) == total - 5


def test_an_unreadable_file_fails_the_job_keeping_what_was_stored(import_app, clean_db, tmp_path):
    data = export(days=2, per_day=800, bad=set())
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(data)[:-len(json.dumps(data["days"][1])) // 2])  # cut inside day 2
    result = cli_import(import_app, str(path), "--developer", "dev-1")
    assert result["status"] == "failed" and result["failure"]
    assert result["accepted"] == 1000 == stored_events(clean_db)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"data": []}))
    assert "not a WakaTime data export" in cli_import(import_app, str(other), "--developer", "dev-1")["failure"]


def test_upload_runs_in_the_background_with_progress_and_the_pipeline(import_app, pipeline_client, clean_db,
                                                                      make_token, export_file):
    path, _ = export_file
    token = make_token("dev-1")
    other = make_token("dev-2")
    auth = {"Authorization": f"Bearer {token}"}
    r = pipeline_client.post("/api/developers/dev-1/import/wakatime", data=path.read_bytes(), headers=auth,
                             content_type="application/json")
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert job["status"] == "pending" and job["file_bytes"] == path.stat().st_size
    location = r.headers["Location"]
    assert location == f"/api/developers/dev-1/import/{job['job_id']}"
    progress = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = pipeline_client.get(location, headers=auth).get_json()
        progress.append((job["progress"], job["read"]))
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "done", job
    assert (job["accepted"], job["rejected"]) == (DAYS * PER_DAY - 5, 5)
    assert job["progress"] == 1.0 and job["bytes_read"] == job["file_bytes"] and job["finished_at"]
    assert progress == sorted(progress)  # progress only moves forward, batch by batch
    # The upload's copy under IMPORT_DIR is deleted once imported; the CLI's own files are never touched.
    assert list((Path(import_app.extensions[EXTENSION_KEY].import_dir)).iterdir()) == []
    assert path.exists()
    # The pipeline ran for every import batch (dispatched from the outbox, processed by the worker).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with clean_db.transaction() as s:
            open_batches = s.scalar(text("SELECT count(*) FROM batches WHERE developer_id = 'dev-1' "
                                         "AND status NOT IN ('processed')"))
        if open_batches == 0:
            break
        time.sleep(0.3)
    assert open_batches == 0
    with clean_db.transaction() as s:
        active = s.scalar(text("SELECT count(*) FROM metric_slots WHERE developer_id = 'dev-1'"))
    assert active > 0
    # Only the developer (or an admin) reads the job; another developer's token is refused, a wrong id not found.
    assert pipeline_client.get(location, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    missing = pipeline_client.get(f"/api/developers/dev-1/import/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and missing.get_json()["error"]["details"][0]["field"] == "job_id"
    # A multipart upload (the file in `file`) works the same way.
    small = {"user": {}, "range": {}, "days": [{"date": "d", "heartbeats": [
        heartbeat(FIRST_DAY + 86400 * 10 + i, i) for i in range(10)]}]}
    r = pipeline_client.post("/api/developers/dev-1/import/wakatime", headers=auth,
                             data={"file": (io.BytesIO(json.dumps(small).encode()), "export.json")},
                             content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    deadline = time.monotonic() + 60
    while (job := pipeline_client.get(r.headers["Location"], headers=auth).get_json())["status"] != "done":
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert (job["read"], job["accepted"]) == (10, 10)
    missing_file = pipeline_client.post("/api/developers/dev-1/import/wakatime", headers=auth,
                                        data={"other": "x"}, content_type="multipart/form-data")
    assert missing_file.status_code == 400 and missing_file.get_json()["error"]["details"][0]["field"] == "file"
    assert pipeline_client.post("/api/developers/dev-1/import/wakatime", data=b"", headers=auth,
                                content_type="application/json").status_code == 400
    assert pipeline_client.post("/api/developers/dev-1/import/wakatime", data=b"{}",
                                headers={"Authorization": f"Bearer {other}"},
                                content_type="application/json").status_code == 403


def test_the_export_is_streamed_with_flat_memory(tmp_path):
    """A ~25 MB export read with a few hundred KB of Python memory: never loaded whole, one heartbeat at a time."""
    path = tmp_path / "big.json"
    with open(path, "w") as out:
        out.write('{"user": {}, "range": {}, "days": [')
        for day in range(20):
            out.write(("," if day else "") + f'{{"date": "2026-01-{day + 1:02d}", "heartbeats": [')
            out.write(",".join(json.dumps(heartbeat(FIRST_DAY + day * 86400 + i, i)) for i in range(3000)))
            out.write("]}")
        out.write("]}")
    size = path.stat().st_size
    assert size > 20_000_000
    tracemalloc.start()
    try:
        count = 0
        with open(path, "rb") as stream:
            for _ in read_export(stream):
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 2_000_000, f"peak {peak} bytes for a {size}-byte file"


def test_erasing_a_developer_deletes_their_import_jobs(clean_db, tmp_path):
    from models.erasure import erase_developer

    with clean_db.transaction() as s:
        for developer_id in ("dev-1", "dev-2"):
            s.add(ImportJob(id=uuid.uuid4(), developer_id=developer_id, source="wakatime",
                            file_path=str(tmp_path / "x.json"), file_bytes=1, status="done"))
    with clean_db.transaction() as s:
        erasure = erase_developer(s, "dev-1", requested_by="test", correlation_id="c")
    assert erasure.deleted["import_jobs"] == 1
    with clean_db.transaction() as s:
        assert s.scalars(select(ImportJob.developer_id)).all() == ["dev-2"]
