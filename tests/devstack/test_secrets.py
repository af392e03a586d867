"""`make run`'s secrets: Flower's generated password and the reused tokens, in ./var with mode 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from devstack import run
from models.db import Database
from models.tokens import find_principal, revoke_token


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(run, "VAR", tmp_path)
    return tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_flower_gets_a_generated_password_kept_0600_and_reused(var: Path) -> None:
    first = run.flower_basic_auth({})
    user, _, password = first.partition(":")
    assert user == "admin" and len(password) >= 20
    assert _mode(var / "flower-auth") == 0o600
    assert run.flower_basic_auth({}) == first  # the next start finds it
    assert run.flower_basic_auth({"FLOWER_BASIC_AUTH": "me:mine"}) == "me:mine"


def test_tokens_are_reused_while_valid_and_replaced_once_revoked(var: Path, clean_db: Database,
                                                                database_url: str) -> None:
    developer, admin = run.create_tokens(database_url)
    path = var / "devstack-tokens.json"
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == {"developer": developer, "admin": admin}
    assert run.create_tokens(database_url) == (developer, admin)  # a restart mints nothing new
    with clean_db.transaction() as s:
        revoke_token(s, admin)
    again = run.create_tokens(database_url)
    assert again[0] == developer and again[1] != admin
    with clean_db.transaction() as s:
        principal = find_principal(s, again[1])
    assert principal is not None and principal.is_admin
