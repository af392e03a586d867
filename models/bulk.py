"""Multi-row INSERTs for the header jobs' derived rows, one statement per batch of rows.

`session.execute(insert(Model), [rows...])` takes the ORM's bulk path, which groups rows by the keys they carry
and sends each group through psycopg2's `executemany`: one round trip per row (bench/jobs.py measured 17
statements for a 100-event batch). psycopg2's `execute_values` sends one statement per `page_size` rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy.orm import Session

from models.db import dbapi_cursor


def insert_values(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                  json_columns: frozenset[str] = frozenset(), suffix: str = "") -> None:
    """INSERT `rows` (tuples in `columns` order) into `table` inside the session's transaction; `suffix` is
    appended to the statement (an ON CONFLICT clause). Values of `json_columns` are serialized to jsonb."""
    rows = list(rows)
    if not rows:
        return
    template = "(" + ", ".join("%s::jsonb" if c in json_columns else "%s" for c in columns) + ")"
    if json_columns:
        positions = [i for i, c in enumerate(columns) if c in json_columns]
        rows = [tuple(json.dumps(v, separators=(",", ":")) if i in positions else v for i, v in enumerate(r))
                for r in rows]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s {suffix}"
    with dbapi_cursor(session) as cursor:
        execute_values(cursor, sql, rows, template=template, page_size=1000)
