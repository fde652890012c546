"""Databases for tests on a PostgreSQL server: one migrated database emptied before each test, or a copy per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from core.storage.database import Database
from core.storage.models import Base


def selected_postgres_url(environ: Mapping[str, str]) -> str | None:
    """TEST_DATABASE_URL, else DATABASE_URL when it is PostgreSQL; None means SQLite."""
    for name in ("TEST_DATABASE_URL", "DATABASE_URL"):
        value = environ.get(name, "").strip()
        if not value:
            continue
        backend = make_url(value).get_backend_name()
        if backend == "postgresql":
            return value
        if name == "TEST_DATABASE_URL" and backend != "sqlite":
            raise RuntimeError(f"TEST_DATABASE_URL: {backend} is not supported; use postgresql")
    return None


class PostgresServer:
    """Creates and drops databases on the server `url` points at (its role needs CREATEDB).

    Most tests share one database, migrated once per run and emptied before each test with one
    TRUNCATE (about 15 ms). A test that hands the database to other processes gets a database of
    its own: `create_database` copies a migrated template (`CREATE DATABASE ... TEMPLATE`, 0.1
    to 0.4 s), and `drop_database` drops it WITH (FORCE), so a connection a killed process left
    cannot keep it alive. Names carry the process id, so two runs on one server do not meet.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.prefix = f"saypro_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self._numbers = itertools.count(1)
        self._admin: Engine | None = None
        self._template_ready = False
        self._shared: tuple[str, Engine, str] | None = None

    @staticmethod
    def describe(url: str) -> str:
        """The server's address for the report header, without the password."""
        parsed = make_url(url)
        return f"{parsed.drivername}://{parsed.username or ''}@{parsed.host or 'socket'}:{parsed.port or 5432}"

    def url_for(self, name: str) -> str:
        """The URL of database `name` on this server, with the password kept (str(URL) would hide it)."""
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or (migrated=False) an empty one."""
        name = f"{self.prefix}_{next(self._numbers)}"
        if migrated:
            self._ensure_template()
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        else:
            self._execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def emptied_shared_database(self) -> str:
        """The run's shared database, every table emptied and every id sequence restarted."""
        if self._shared is None:
            url = self.create_database()
            engine = create_engine(url, poolclass=NullPool)
            tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
            self._shared = (url, engine, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        url, engine, truncate = self._shared
        with engine.begin() as connection:
            # Tests run one after another, so any other connection is one an earlier test left
            # open (perhaps inside a transaction, holding locks TRUNCATE would wait for): end it.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            connection.exec_driver_sql(truncate)
        return url

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None and name.startswith(self.prefix), name
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop what this run made (the template too); leftovers of a killed run share the prefix."""
        if self._shared is not None:
            self._shared[1].dispose()
            self._shared = None
        if self._admin is None:
            return
        with self._admin.connect() as connection:
            names = (
                connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"), {"prefix": f"{self.prefix}_%"}
                )
                .scalars()
                .all()
            )
        for name in names:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.dispose()
        self._admin = None

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.template}"')
        database = Database.from_url(self.url_for(self.template))
        try:
            database.upgrade()
        finally:
            database.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no connection
        self._template_ready = True

    def _execute(self, statement: str) -> None:
        if self._admin is None:
            self._admin = create_engine(_admin_url(self.url), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.exec_driver_sql(statement)


def _admin_url(url: URL) -> str:
    """The URL as given: CREATE and DROP DATABASE run from the database it names (often `postgres`)."""
    return url.render_as_string(hide_password=False)
