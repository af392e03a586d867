"""Real servers for the suite: the ones DATABASE_URL / REDIS_URL name, else throwaway embedded ones.

Servers are started lazily (only when a test asks for them), so the pure
tests under tests/activity run without any.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from core.settings import Settings
from devstack.servers import EmbeddedPostgres, EmbeddedRedis, migrate
from models.db import Database
from tests.support.database import truncate_all

# Plain-text logs under pytest (JSON logging would replace pytest's capture handlers).
os.environ.setdefault("LOG_JSON", "0")
# The suite posts far faster than a developer would; the rate-limit tests set the real limits explicitly.
os.environ.setdefault("RATE_LIMIT_PER_SECOND", "100000")
os.environ.setdefault("RATE_LIMIT_BURST", "100000")
for _name in ("RATE_LIMIT_EVENTS_PER_SECOND", "RATE_LIMIT_EVENTS_BURST", "RATE_LIMIT_BYTES_PER_SECOND",
              "RATE_LIMIT_BYTES_BURST"):
    os.environ.setdefault(_name, "1000000000000")


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="devpulse-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(server_dir: Path) -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(server_dir / "pg").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: EmbeddedPostgres | None) -> str:
    """A fresh database for this run, migrated to head (the schema only ever comes from Alembic)."""
    name = f"devpulse_test_{uuid.uuid4().hex[:8]}"
    if postgres_server is not None:
        url = postgres_server.create_database(name)
    else:
        base = make_url(Settings.from_env().sqlalchemy_url)
        import psycopg2

        conn = psycopg2.connect(host=base.host, port=base.port or 5432, user=base.username,
                                password=base.password, dbname=base.database or "postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        url = base.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    os.environ["DATABASE_URL"] = url
    return url


@pytest.fixture(scope="session")
def redis_server(server_dir: Path) -> Iterator[EmbeddedRedis | None]:
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(server_dir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | None) -> str:
    url = redis_server.url() if redis_server is not None else os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = url
    return url


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = Database()
    database.configure(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clean_db(db: Database) -> Database:
    truncate_all(db)
    return db


@pytest.fixture
def session(db: Database):
    """A session inside a transaction that is rolled back after the test."""
    from sqlalchemy.orm import Session

    conn = db.engine.connect()
    outer = conn.begin()
    s = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield s
    s.close()
    outer.rollback()
    conn.close()


@pytest.fixture(scope="session")
def celery_app(database_url: str, redis_url: str):
    from tasks.celery_app import app
    from tasks.context import reset_database

    # The worker app was built at import from the environment of that moment; point it at this run's servers
    # before anything has connected (no connection or backend is cached yet at this point).
    settings = Settings.from_env(database_url=os.environ["DATABASE_URL"], redis_url=redis_url)
    app.conf.update(broker_url=settings.redis_url, result_backend=settings.redis_url, devpulse_settings=settings)
    reset_database()
    return app


@pytest.fixture
def app(clean_db: Database, redis_url: str, celery_app, tmp_path):
    from app import create_app
    from app.auth import clear_token_cache

    clear_token_cache()
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("devpulse:ratelimit:*"):
        client.delete(key)
    client.close()
    # Uploads (history imports) go to the test's own directory, never the checkout's var/imports.
    application = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url,
                              "import_dir": str(tmp_path / "imports")})
    application.config["TESTING"] = True
    yield application
    application.extensions["devpulse.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_token(clean_db: Database):
    from models.tokens import create_token

    def _make(developer_id: str | None = "dev-1", *, admin: bool = False, ingest_for_all: bool = False) -> str:
        with clean_db.transaction() as s:
            return create_token(s, developer_id, admin=admin, ingest_for_all=ingest_for_all)

    return _make


@pytest.fixture(scope="session")
def celery_worker(celery_app):
    """A real Celery worker (threads pool, in this process) on the suite's Redis and PostgreSQL: no eager mode."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker
