"""`flask --app app data export`: the operators' side of the export endpoints (app/export_api.py).

Writes to a file or to stdout; with a file and a terminal, a progress bar counts the events written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

import click
from flask import Flask
from flask.cli import AppGroup

from app import export_formats
from app.errors import ApiError
from app.export_api import event_export, metric_export
from app.query_params import parse_time_value
from app.storage import database, storage
from models.developer_settings import preferences
from models.export import EVENT_COLUMNS, count_events, event_json_lines, event_rows
from models.metrics_read import GRANULARITIES

data = AppGroup("data", help="Export a developer's data.")


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


def init_app(app: Flask) -> None:
    app.cli.add_command(data)
