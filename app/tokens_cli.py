"""`flask --app app tokens create|list|revoke`: a token is printed once and stored as a hash only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click
from flask import Flask
from flask.cli import AppGroup

from app.storage import database
from models.tokens import create_token, list_tokens, revoke_token, revoke_token_id
from tasks.cli import parse_duration, table

tokens = AppGroup("tokens", help="Create and revoke API tokens.")


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires-in") from None


@tokens.command("create")
@click.argument("developer_id", required=False)
@click.option("--admin", is_flag=True, help="An admin token: may read every batch and use admin endpoints.")
@click.option("--ingest-for-all", "ingest_for_all", is_flag=True,
              help="May post events for any developer (an importer); no token may without it, admin or not.")
@click.option("--label", default="", help="A note to recognise the token by.")
@click.option("--expires-in", "expires_in", metavar="DURATION", help="e.g. 90d, 12h (default: never expires).")
def create(developer_id: str | None, admin: bool, ingest_for_all: bool, label: str, expires_in: str | None) -> None:
    if developer_id is None and not admin and not ingest_for_all:
        raise click.UsageError("DEVELOPER_ID is required unless --admin or --ingest-for-all is given.")
    if developer_id is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,128}", developer_id):
        raise click.BadParameter("must be 1-128 characters of [A-Za-z0-9._@-]", param_hint="DEVELOPER_ID")
    lifetime = _duration(expires_in)
    expires_at = datetime.now(UTC) + lifetime if lifetime is not None else None
    with database().transaction() as session:
        token = create_token(session, developer_id, admin=admin, label=label, expires_at=expires_at,
                             ingest_for_all=ingest_for_all)
    click.echo(token)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


@tokens.command("list")
def list_() -> None:
    """Every token: id, developer, admin, ingest_for_all, label, created, last used, expires, revoked (never the
    token itself)."""
    with database().transaction() as session:
        rows = list_tokens(session)
    click.echo(table(("id", "developer", "admin", "ingest_for_all", "label", "created", "last_used", "expires",
                      "revoked"),
                     [(t.id, t.developer_id or "-", "yes" if t.is_admin else "no", "yes" if t.ingest_for_all else "no",
                       t.label or "-", _when(t.created_at), _when(t.last_used_at), _when(t.expires_at),
                       _when(t.revoked_at)) for t in rows]))


@tokens.command("revoke")
@click.argument("token", required=False)
@click.option("--id", "token_id", type=int, help="The token's id (see `tokens list`).")
def revoke(token: str | None, token_id: int | None) -> None:
    """Revoke by id (`--id N`) or by the token itself; takes effect within the 30 s token cache."""
    if (token is None) == (token_id is None):
        raise click.UsageError("give either --id N or the TOKEN")
    with database().transaction() as session:
        found = revoke_token_id(session, token_id) if token_id is not None else revoke_token(session, token or "")
        if not found:
            raise click.ClickException("no such token")
    click.echo("revoked")


def init_app(app: Flask) -> None:
    app.cli.add_command(tokens)
