"""Operator commands on the `celery` program (registered through the `celery.commands` entry point in setup.cfg):

    celery -A tasks batches [--status S] [--developer D] [--limit N]
    celery -A tasks replay  --batch ID [--developer D] | --developer D [--since T] [--until T]   [--dry-run]
    celery -A tasks requeue [--stuck-for 15m] [--failed] [--dead-letter] [--quarantined] [--limit N] [--dry-run]
    celery -A tasks audit verify [--since T]
    celery -A tasks audit seal [--grace SECONDS]

Thin: argument parsing (here) and printing. The logic lives in models/operations.py and models/audit_chain.py;
the database is the one the workers use (DATABASE_URL), and re-dispatches go through the outbox and
tasks.dispatch.dispatch_record like any other publish. Bad arguments exit 2, an unknown batch, a batch id that
several developers use (without --developer) or a broken audit chain exits 1, each with a message on stderr.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from celery.bin.base import CeleryCommand
from sqlalchemy.exc import OperationalError

from models import audit_chain, operations
from models.alert_notifications import requeue_dead_letters
from models.db import Database
from models.tables import BatchStatus

# --- argument parsing ---------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(value: str) -> timedelta:
    """'90s', '15m', '2h', '1d', '1h30m' or a bare number of seconds."""
    raw = value.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        seconds = float(raw)
    elif _DURATION.fullmatch(raw):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(raw))
    else:
        raise ValueError(f"{value!r} is not a duration (examples: 90s, 15m, 2h, 1h30m)")
    if seconds <= 0:
        raise ValueError(f"{value!r}: the duration must be longer than zero")
    return timedelta(seconds=seconds)


def parse_timestamp(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or time ('2024-05-01', '2024-05-01T12:00Z'; naive means UTC),
    or a duration meaning that long ago ('2h')."""
    raw = value.strip()
    try:
        return (now or datetime.now(UTC)) - parse_duration(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{value!r} is not a timestamp (examples: 2024-05-01, 2024-05-01T12:00:00Z, "
                         "or a duration ago such as 2h)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_batch_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{value!r} is not a batch id (a UUID)") from None


class _Parsed(click.ParamType):
    """A click type from one of the parse_* functions (ValueError -> a usage error naming the option)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


BATCH_ID = _Parsed("uuid", parse_batch_id)
DURATION = _Parsed("duration", parse_duration)
TIMESTAMP = _Parsed("timestamp", parse_timestamp)


def _database() -> Database:
    from tasks.context import database

    return database()


def _publish(outbox_id: int) -> bool:
    from tasks.context import celery, database
    from tasks.dispatch import dispatch_record
    from tasks.tracing import start_worker_tracing

    # With tracing on, an operator's re-dispatch is one trace too: its publish is the root, the chord below it.
    start_worker_tracing("devpulse-cli")
    return dispatch_record(database(), celery(), outbox_id)


@contextmanager
def _db_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        first_line = str(exc.orig or exc).strip().splitlines()[0]
        raise click.ClickException(f"cannot reach the database (DATABASE_URL): {first_line}") from exc


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def _cut(value: str | None, width: int) -> str:
    if not value:
        return "-"
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[("-" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _style(ctx: click.Context, word: str, **style: Any) -> str:
    return word if getattr(ctx.obj, "no_color", False) else click.style(word, **style)


# --- batches ------------------------------------------------------------------------------------------------


@click.command(cls=CeleryCommand)
@click.option("--status", type=click.Choice([s.value for s in BatchStatus]), help="Only batches in this state.")
@click.option("--developer", help="Only this developer's batches.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
def batches(ctx: click.Context, status: str | None, developer: str | None, limit: int) -> None:
    """List batches and their pipeline state, most recently received first."""
    with _db_errors(), _database().session() as session:
        found = operations.list_batches(session, status=status, developer_id=developer, limit=limit)
    if not found:
        click.echo("no batches match")
        return
    click.echo(table(
        ("batch_id", "developer", "status", "recv", "acc", "dup", "rej", "replays", "received_at", "completed_at",
         "last_error"),
        [(b.batch_id, b.developer_id, b.status, b.received, b.accepted, b.duplicates, b.rejected, b.replay_count,
          _when(b.received_at), _when(b.completed_at), _cut(b.last_error, 40)) for b in found],
    ))
    click.echo(f"{len(found)} batch(es)" + (f" (--limit {limit} reached)" if len(found) == limit else ""))


# --- replay -------------------------------------------------------------------------------------------------


def _action_table(rows: list[operations.ActionRow], *, replay: bool) -> str:
    if replay:
        return table(("batch_id", "developer", "status", "accepted", "replays", "action"),
                     [(r.batch_id, r.developer_id, r.status, r.accepted, r.replay_count,
                       r.action if r.action != "skipped" else f"skipped: {r.reason}") for r in rows])
    return table(("batch_id", "developer", "status", "reason", "action"),
                 [(r.batch_id, r.developer_id, r.status, r.reason, r.action) for r in rows])


@click.command(cls=CeleryCommand)
@click.option("--batch", "batch_id", type=BATCH_ID,
              help="Replay this batch (with --developer when several developers use the id).")
@click.option("--developer", help="Replay this developer's batches (optionally within --since/--until), or with "
                                  "--batch: this developer's batch of that id.")
@click.option("--since", type=TIMESTAMP,
              help="With --developer: batches with events at or after T (ISO 8601, or a duration ago: 2h).")
@click.option("--until", type=TIMESTAMP, help="With --developer: batches with events before T.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.pass_context
def replay(ctx: click.Context, batch_id: Any, developer: str | None, since: datetime | None,
           until: datetime | None, dry_run: bool) -> None:
    """Re-run the downstream jobs of batches from their stored events.

    Each replayed batch gets replay_count + 1, an audit record `replay_requested` and a new outbox
    record flagged is_replay; the jobs recompute their rows, so nothing is duplicated. A batch id is unique
    per developer only: when several developers use it, --developer picks one.
    """
    if batch_id is None and developer is None:
        raise click.UsageError("give --batch ID (optionally with --developer ID) or --developer ID", ctx)
    if batch_id is not None and (since or until):
        raise click.UsageError("--since/--until select a developer's batches; use them with --developer", ctx)
    if since and until and since >= until:
        raise click.UsageError("--since must be before --until", ctx)
    with _db_errors():
        try:
            rows = operations.replay(_database(), _publish, batch_id=batch_id, developer_id=developer,
                                     since=since, until=until, dry_run=dry_run, requested_by="cli")
        except operations.AmbiguousBatchError as exc:
            raise click.ClickException(
                f"batch {exc.batch_id} is ambiguous: {len(exc.developers)} developers use this id: "
                f"{', '.join(exc.developers)}; give --developer to choose one") from exc
        except operations.UnknownBatchError as exc:
            raise click.ClickException(str(exc)) from exc
    if not rows:
        click.echo("no batches match")
        return
    click.echo(_action_table(rows, replay=True))
    done = [r for r in rows if r.action != "skipped"]
    if dry_run:
        click.echo(f"dry run: {len(done)} batch(es) would be replayed; nothing was changed")
    else:
        click.echo(f"{len(done)} batch(es) replayed, {len(rows) - len(done)} skipped")
    if batch_id is not None and not done:
        raise click.ClickException(f"batch {batch_id} was not replayed: {rows[0].reason}")


# --- requeue ------------------------------------------------------------------------------------------------


@click.command(cls=CeleryCommand)
@click.option("--stuck-for", type=DURATION,
              help="Batches dispatched/processing with no progress for this long (90s, 15m, 2h).")
@click.option("--failed", is_flag=True, help="Batches whose pipeline failed.")
@click.option("--dead-letter", is_flag=True,
              help="Batches whose outbox record was dead-lettered, and dead-lettered alert notifications.")
@click.option("--quarantined", is_flag=True,
              help="Release quarantined events (after a fix) and replay their batches.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many batches per kind.")
@click.option("--dry-run", is_flag=True, help="Show what would be requeued; change nothing.")
@click.pass_context
def requeue(ctx: click.Context, stuck_for: Any, failed: bool, dead_letter: bool, quarantined: bool, limit: int,
            dry_run: bool) -> None:
    """Re-dispatch stuck, failed or dead-lettered batches through a new outbox record; release quarantined
    events and replay their batches."""
    if stuck_for is None and not failed and not dead_letter and not quarantined:
        raise click.UsageError("nothing selected: give --stuck-for DURATION, --failed, --dead-letter and/or "
                               "--quarantined", ctx)
    rows = []
    with _db_errors():
        if stuck_for is not None or failed or dead_letter:
            rows += operations.requeue(_database(), _publish, stuck_for=stuck_for, failed=failed,
                                       dead_letter=dead_letter, limit=limit, dry_run=dry_run, requested_by="cli")
        if quarantined:
            rows += operations.requeue_quarantined(_database(), _publish, limit=limit, dry_run=dry_run,
                                                   requested_by="cli")
        if dead_letter:
            with _database().transaction() as session:
                notifications = requeue_dead_letters(session, limit=limit, dry_run=dry_run)
            if notifications:
                click.echo(f"alert notification(s) {', '.join(map(str, notifications))}: "
                           + ("would be delivered again" if dry_run else "pending again (the relay delivers them)"))
    if not rows:
        click.echo("nothing to requeue")
        return
    click.echo(_action_table(rows, replay=False))
    click.echo(f"dry run: {len(rows)} batch(es) would be requeued; nothing was changed" if dry_run
               else f"{len(rows)} batch(es) requeued")


# --- audit --------------------------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The audit trail's hash chain: verify it, or seal pending records now."""


@audit.command(cls=CeleryCommand)
@click.option("--since", type=TIMESTAMP,
              help="Start at the first sealed record created at or after T (ISO 8601, or a duration ago: 2h).")
@click.pass_context
def verify(ctx: click.Context, since: datetime | None) -> None:
    """Verify the hash chain; exit 1 at the first broken link."""
    with _db_errors(), _database().session() as session:
        result = audit_chain.verify_chain(session, since=since)
    if result.broken is not None:
        link = result.broken
        click.echo(f"{_style(ctx, 'BROKEN', fg='red', bold=True)}: first broken link at seal_seq {link.seal_seq}"
                   f" (id {link.id}): {link.problem}: {link.message}", err=True)
        click.echo(f"{result.checked} record(s) verified before it", err=True)
        ctx.exit(1)
    if result.checked:
        click.echo(f"{_style(ctx, 'OK', fg='green', bold=True)}: {result.checked} sealed record(s) verified "
                   f"(seal_seq {result.first_seq}..{result.last_seq})")
        click.echo(f"head: seal_seq {result.last_seq} chain {result.head}")
    else:
        click.echo(f"{_style(ctx, 'OK', fg='green', bold=True)}: no sealed records"
                   + (" since then" if since else ""))
    click.echo(f"unsealed: {result.unsealed}"
               + (f" (oldest created {_when(result.oldest_unsealed)})" if result.unsealed else ""))
    if result.out_of_id_order:
        click.echo(f"sealed after a higher id (a long transaction committed late): {result.out_of_id_order}")


@audit.command(cls=CeleryCommand)
@click.option("--grace", type=click.FloatRange(min=0), default=audit_chain.DEFAULT_GRACE_SECONDS,
              show_default=True, help="Seal only records whose transaction started at least this many seconds ago.")
@click.pass_context
def seal(ctx: click.Context, grace: float) -> None:
    """Seal the pending audit records now (beat does it every 10 s)."""
    with _db_errors():
        result = audit_chain.seal_pending(_database(), grace_seconds=grace)
    if result.sealed:
        click.echo(f"sealed {result.sealed} record(s): seal_seq {result.first_seq}..{result.last_seq}")
    else:
        click.echo("nothing to seal")
    if result.head:
        click.echo(f"head: chain {result.head}")
