"""Export formats: chunks of rows in, chunks of bytes out, so a response (or a file) is written as it is read.

NDJSON and CSV are written row group by row group; Parquet (pyarrow) one row group per chunk of rows, through a
sink that hands over what the writer produced after each group, so memory holds one chunk whatever the range.
Shared by the HTTP export endpoints (app/export_api.py) and `flask --app app data export` (app/data_cli.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

EVENT_FORMATS = ("ndjson", "csv", "parquet")
METRIC_FORMATS = ("ndjson", "csv")
PARQUET_ROW_GROUP = 2000
MEDIA_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
               "parquet": "application/vnd.apache.parquet"}


def ndjson_lines(chunks: Iterable[list[str]]) -> Iterator[bytes]:
    for lines in chunks:
        yield ("\n".join(lines) + "\n").encode("utf-8")


def _csv_cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def csv_rows(columns: Sequence[str], chunks: Iterable[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rows in chunks:
        writer.writerows([_csv_cell(v) for v in row] for row in rows)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


class _Drain(io.RawIOBase):
    """A write-only stream the Parquet writer fills and the caller empties after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _event_schema() -> Any:
    import pyarrow as pa

    stamp = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("event_id", pa.string()), ("type", pa.string()), ("timestamp", stamp),
        ("utc_offset_minutes", pa.int16()), ("corrected_timestamp", stamp), ("received_at", stamp),
        ("batch_id", pa.string()), ("seq", pa.int32()), ("schema_version", pa.string()),
        ("session_id", pa.string()), ("event", pa.string()),
    ])


def parquet_events(chunks: Iterable[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    """Rows of models.export.EVENT_COLUMNS as one Parquet file, typed (timestamps in UTC, `event` as JSON text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _event_schema()
    sink = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        for rows in chunks:
            columns = list(zip(*rows, strict=True))
            writer.write_table(pa.Table.from_arrays(
                [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)],
                schema=schema))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def metric_records(buckets: Iterable[Any], names: Sequence[str],
                   shown: Callable[[datetime], str]) -> Iterator[list[list[Any]]]:
    """Metric buckets as rows of ["bucket_start", *names], in chunks of up to 1,000."""
    chunk: list[list[Any]] = []
    for bucket in buckets:
        chunk.append([shown(bucket.bucket_start), *(bucket.values[name] for name in names)])
        if len(chunk) == 1000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
