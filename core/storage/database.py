"""The engine and sessions for SQLite (WAL, one writer at a time) or PostgreSQL, and migrations."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# How long a transaction on SQLite waits for the process's own write lock before it goes on to
# SQLite's (whose busy_timeout then applies): as long as that busy_timeout.
SQLITE_LOCK_WAIT_SECONDS = 30.0
# pg_advisory_xact_lock's key for migrations: any constant the application uses for nothing else.
MIGRATION_LOCK = 7_273_001


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        _serialise_sqlite_writers(engine)
        return engine
    # connect_timeout: an unreachable server fails a request in seconds (the webhook answers 503
    # and the provider retries) instead of hanging it. pool_size: enough kept open for the web
    # process's busy worker threads, so that under load connections are not opened and closed
    # again for each transaction beyond it (a new server process each time); opened only as
    # needed, and at most 30 per process.
    engine = create_engine(url, pool_size=20, max_overflow=10, connect_args={"connect_timeout": 5})
    _ping_idle_connections(engine)
    return engine


# A pooled PostgreSQL connection left unused this long is checked with a round trip before it
# is used again (see _ping_idle_connections).
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Replace, at checkout, a connection that sat idle and that the server dropped meanwhile (a
    restart, a failover, an idle timeout) instead of failing a request with it.

    SQLAlchemy's pool_pre_ping pings at every checkout: under load that was a fifth of the web
    process's CPU per message (four checkouts each) and most of its waiting. A connection in
    steady use has just shown it works, and if the server goes away under load the failing
    statement's disconnect error makes SQLAlchemy drop every older connection of the pool.
    """

    @event.listens_for(engine, "checkin")
    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out another (a new one if need be).
            raise DisconnectionError("the server closed an idle connection") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that "begin" below is ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _serialise_sqlite_writers(engine: Engine) -> None:
    """Every transaction begins with BEGIN IMMEDIATE, after taking a lock of this process.

    SQLite has one writer at a time. Taking the write lock when the transaction begins, rather
    than at its first write, makes a second writer wait instead of failing with "database is
    locked" when it tries to upgrade a read snapshot.
    https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl

    SQLite's own wait (its busy handler) polls: it sleeps up to 100 ms between tries, so under
    load a transaction sleeps on while the lock has long been free, and the threads of one
    process take the lock in no order. The transactions of this process therefore queue on a
    threading lock first, held from BEGIN to COMMIT or ROLLBACK, and are handed the lock as soon
    as it is released. Between processes (`run` beside a `worker`, or several uvicorn workers)
    the same holds with a lock on a file beside the database (_FileLock), which the kernel hands
    to the next process as soon as it is released, and releases itself when its process dies.
    """
    lock = threading.Lock()
    between = _FileLock.beside(engine.url.database)

    def begin(connection: Any) -> None:
        held = lock.acquire(timeout=SQLITE_LOCK_WAIT_SECONDS)  # if not, SQLite's busy timeout decides
        if held and between is not None:
            between.acquire()
        connection.info["saypro_write_lock"] = held
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            release(connection)
            raise

    def release(connection: Any) -> None:
        info = getattr(connection, "info", None)
        if info is not None and info.pop("saypro_write_lock", False):
            if between is not None:
                between.release()
            lock.release()

    commit = engine.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        # Released once SQLite has committed: released before, the next transaction would find
        # SQLite's lock still taken and go to sleep in its busy handler.
        try:
            commit(dbapi_connection)
        finally:
            release(dbapi_connection)

    engine.dialect.do_commit = do_commit  # type: ignore[method-assign]
    event.listen(engine, "begin", begin)
    # A rollback releases it at once (on an invalidated connection there is no rollback to wait for).
    event.listen(engine, "rollback", release)


def writer_lock_path(database: str | None) -> str | None:
    """The file whose flock(2) a process holds while it writes to this SQLite database file
    (`<database>-writer`); None for an in-memory database."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer"


def lock_conflict(exc: DBAPIError) -> bool:
    """Whether the database rolled the transaction back for another's locks (SQLSTATE class 40:
    a deadlock, a serialization failure), so that trying it again may succeed."""
    return str(getattr(exc.orig, "sqlstate", None) or "").startswith("40")


class _FileLock:
    """An exclusive flock(2) on `<database>-writer`, for one thread of this process at a time.

    Waiting for it blocks in the kernel (the interpreter lock released), which wakes the waiter
    as soon as the holder lets go; a process that dies, even by SIGKILL, lets go with it. The
    file is opened again in a child process (after a fork), since a lock belongs to an open file
    and a child shares its parent's.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    @classmethod
    def beside(cls, database: str | None) -> _FileLock | None:
        """The lock beside a SQLite database file; None for an in-memory database."""
        path = writer_lock_path(database)
        return cls(path) if path is not None else None

    def acquire(self) -> None:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Database:
    """The engine and a session factory; `transaction()` is the one way code writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def rows(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success and rolled back on any error: for
        work done with statements on the tables alone, without the session's bookkeeping."""
        with self.engine.begin() as connection:
            yield connection

    def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT 1")).scalar() == 1

    def upgrade(self) -> None:
        """Run the Alembic migrations up to head; processes starting together take turns."""
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # `run` and every `worker` migrate at start: on PostgreSQL two of them at once
                # would both try to create the same tables. A transaction-level advisory lock
                # makes the others wait, then find the database at head. (SQLite's BEGIN
                # IMMEDIATE already admits one writer at a time.)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = alembic_config(str(self.engine.url))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the bundled migrations, without an ini file on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
