"""Engine and session factory, shared by the web app, the workers and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        # Short connect timeout: a dead database must turn into a fast 503, not a hung request.
        connect_args={"connect_timeout": 3, "application_name": "devpulse"},
    )


class Guard(Protocol):
    """A circuit breaker (core.breakers.Breaker) as `transaction()` uses it."""

    def guard(self) -> AbstractContextManager[None]: ...


class Database:
    """Owns one engine and session factory; opened lazily so imports open nothing."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._breaker: Guard | None = None

    def configure(self, url: str, *, pool_size: int = 5, breaker: Guard | None = None) -> None:
        """`breaker`: every `transaction()` runs inside it (the workers' database breaker; the web's requests go
        through app.storage.Storage, which owns retries and the same breaker)."""
        self.dispose()
        self._engine = make_engine(url, pool_size=pool_size)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._breaker = breaker

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Database.configure() was not called")
        return self._engine

    def session(self) -> Session:
        if self._sessions is None:
            raise RuntimeError("Database.configure() was not called")
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One session in one transaction: committed on success, rolled back on any error."""
        guard = self._breaker.guard() if self._breaker is not None else nullcontext()
        with guard, self.session() as session, session.begin():
            yield session

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._sessions = None


@contextmanager
def dbapi_cursor(session: Session) -> Iterator[Any]:
    """A DBAPI (psycopg2) cursor inside the session's transaction, for the header jobs' hot paths: building ORM
    rows and statements cost more than the queries themselves there (see README, Performance)."""
    dbapi: Any = session.connection().connection.dbapi_connection
    with dbapi.cursor() as cursor:
        yield cursor


def run_sql(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Plain SQL (one or more statements) in the session's transaction; the rows of the last one, if any."""
    with dbapi_cursor(session) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []
