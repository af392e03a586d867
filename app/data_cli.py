"""`flask --app app data export` and `data import-wakatime`: the operators' side of the export endpoints
(app/export_api.py) and of the history import (app/import_api.py, app/wakatime_import.py).

Writes to a file or to stdout; with a file and a terminal, a progress bar counts the events written.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app import export_formats
from app.errors import ApiError
from app.export_api import event_export, metric_export
from app.import_api import enqueue, job_json, record_job
from app.query_params import parse_time_value
from app.settings import settings
from app.storage import database, storage
from app.wakatime_import import run_import
from models.developer_settings import preferences
from models.export import EVENT_COLUMNS, count_events, event_json_lines, event_rows
from models.metrics_read import GRANULARITIES
from models.tables import ImportJob

data = AppGroup("data", help="Export a developer's data, or import a WakaTime history.")


def _moment(name: str, value: str | None, zone: ZoneInfo) -> datetime | None:
    try:
        return parse_time_value(name, value, zone)
    except ApiError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{name}") from None


def _counted(chunks: Iterator[list[Any]], bar: Any) -> Iterator[list[Any]]:
    for chunk in chunks:
        yield chunk
        bar.update(len(chunk))


@data.command("export")
@click.option("--developer", "developer_id", required=True, help="The developer whose data to export.")
@click.option("--what", type=click.Choice(["events", "metrics"]), default="events", show_default=True)
@click.option("--format", "fmt", type=click.Choice(export_formats.EVENT_FORMATS), default="ndjson",
              show_default=True, help="parquet: events only.")
@click.option("--granularity", type=click.Choice(GRANULARITIES), default="day", show_default=True,
              help="Metrics only.")
@click.option("--from", "start_text", metavar="TIME", help="RFC 3339 timestamp, or a date (local midnight).")
@click.option("--to", "end_text", metavar="TIME", help="Exclusive; RFC 3339 timestamp, or a date.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              show_default=True, help="A file, or - for stdout.")
def export(developer_id: str, what: str, fmt: str, granularity: str, start_text: str | None,
           end_text: str | None, output: str) -> None:
    """Export a developer's events (NDJSON, CSV or Parquet) or metrics (NDJSON or CSV)."""
    if what == "metrics" and fmt not in export_formats.METRIC_FORMATS:
        raise click.BadParameter("metrics export as ndjson or csv", param_hint="--format")
    db = database()
    with db.transaction() as session:
        zone = ZoneInfo(preferences(session, developer_id).timezone)
    start, end = _moment("from", start_text, zone), _moment("to", end_text, zone)
    to_stdout = output == "-"
    stream: IO[bytes] = sys.stdout.buffer if to_stdout else open(output, "wb")  # noqa: SIM115
    try:
        if what == "metrics":
            for part in metric_export(storage().transaction, developer_id, granularity, fmt, start, end):
                stream.write(part)
            return
        if to_stdout or not sys.stderr.isatty():
            for part in event_export(db, developer_id, fmt, start, end):
                stream.write(part)
            return
        total = count_events(db, developer_id, start=start, end=end)
        with click.progressbar(length=total, label=f"exporting {total:,} events", file=sys.stderr) as bar:
            if fmt == "ndjson":
                body = export_formats.ndjson_lines(_counted(event_json_lines(db, developer_id, start=start, end=end),
                                                            bar))
            else:
                chunk = export_formats.PARQUET_ROW_GROUP if fmt == "parquet" else 5000
                rows = _counted(event_rows(db, developer_id, start=start, end=end, chunk=chunk), bar)
                body = (export_formats.csv_rows(EVENT_COLUMNS, rows) if fmt == "csv"
                        else export_formats.parquet_events(rows))
            for part in body:
                stream.write(part)
    finally:
        if not to_stdout:
            stream.close()


@data.command("import-wakatime")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--developer", "developer_id", help="The developer the heartbeats belong to (required with FILE).")
@click.option("--background", is_flag=True, help="Queue the job for the workers instead of running it here.")
@click.option("--resume", "resume_id", metavar="JOB_ID", help="Run a pending or interrupted job again, from its "
              "last counted batch (nothing is stored twice).")
def import_wakatime(file: str | None, developer_id: str | None, background: bool, resume_id: str | None) -> None:
    """Import a WakaTime data export (the JSON of wakatime.com's "Export your data") for a developer.

    The file is read where it is (not copied) and streamed; with --background the workers must see the same path.
    Prints the job as JSON when it ends (or, with --background, once queued).
    """
    if resume_id is not None:
        try:
            job_id = uuid.UUID(resume_id)
        except ValueError:
            raise click.BadParameter("not a UUID", param_hint="--resume") from None
    else:
        if file is None or developer_id is None:
            raise click.UsageError("give FILE and --developer (or --resume JOB_ID)")
        path = Path(file).resolve()
        job_id = uuid.uuid4()
        record_job(job_id, developer_id, path, path.stat().st_size, owns_file=False)
    if background:
        enqueue(job_id)
    else:
        run_import(database(), current_app.extensions.get("celery"), settings(), job_id)
    found = storage().transaction(lambda s: (lambda j: job_json(j) if j is not None else None)(
        s.get(ImportJob, job_id)))
    if found is None:
        raise click.BadParameter("no such import job", param_hint="--resume")
    click.echo(json.dumps(found))
    if found["status"] == "failed":
        sys.exit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(data)
