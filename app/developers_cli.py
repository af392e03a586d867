"""`flask --app app developers erase ID --confirm`: the operators' side of DELETE /api/admin/developers/<id>."""

from __future__ import annotations

import getpass
import uuid

import click
from flask import Flask
from flask.cli import AppGroup

from app.storage import database
from models.erasure import erase_developer

developers = AppGroup("developers", help="Manage developers' data.")


@developers.command("erase")
@click.argument("developer_id")
@click.option("--confirm", is_flag=True, help="Required: the erasure cannot be undone.")
def erase(developer_id: str, confirm: bool) -> None:
    """Delete every stored event, metric, alert, setting and token of DEVELOPER_ID (audited)."""
    if not confirm:
        raise click.UsageError("erasing a developer cannot be undone: add --confirm")
    with database().transaction() as session:
        erasure = erase_developer(session, developer_id, requested_by=f"cli ({getpass.getuser()})",
                                  correlation_id=uuid.uuid4().hex)
    if not erasure.found:
        raise click.ClickException(f"nothing is stored for developer {developer_id!r}")
    for table, count in erasure.deleted.items():
        click.echo(f"{table:22} {count:>10,}")
    click.echo(f"erased {developer_id!r} (sha256 {erasure.developer_hash})")


def init_app(app: Flask) -> None:
    app.cli.add_command(developers)
