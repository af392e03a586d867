"""`flask --app app tokens create <developer_id> [--admin]`: a token is printed once, stored as a hash."""

from __future__ import annotations

import re

import click
from flask import Flask
from flask.cli import AppGroup

from app.storage import database
from models.tokens import create_token, revoke_token

tokens = AppGroup("tokens", help="Create and revoke API tokens.")


@tokens.command("create")
@click.argument("developer_id", required=False)
@click.option("--admin", is_flag=True, help="An admin token: may read every batch and use admin endpoints.")
@click.option("--label", default="", help="A note to recognise the token by.")
def create(developer_id: str | None, admin: bool, label: str) -> None:
    if developer_id is None and not admin:
        raise click.UsageError("DEVELOPER_ID is required unless --admin is given.")
    if developer_id is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,128}", developer_id):
        raise click.BadParameter("must be 1-128 characters of [A-Za-z0-9._@-]", param_hint="DEVELOPER_ID")
    with database().transaction() as session:
        token = create_token(session, developer_id, admin=admin, label=label)
    click.echo(token)


@tokens.command("revoke")
@click.argument("token")
def revoke(token: str) -> None:
    with database().transaction() as session:
        if not revoke_token(session, token):
            raise click.ClickException("no such token")
    click.echo("revoked")


def init_app(app: Flask) -> None:
    app.cli.add_command(tokens)
