"""Shared fixtures: no network but loopback, a migrated database per test, the bundled knowledge base.

The backend is SQLite (a file per test) unless TEST_DATABASE_URL (or a PostgreSQL DATABASE_URL)
names a PostgreSQL server: then every test gets its own database there, copied from a template
migrated once per run (tests/storage/postgres.py). `@pytest.mark.only_on("postgresql", reason=...)`
marks a test that needs one backend; it is skipped on the other with that reason, never silently.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.storage.database import Database
from tests.storage.postgres import PostgresServer, selected_postgres_url

# Read once, then taken out of the environment: Settings reads DATABASE_URL, and the tests of its
# default (and every load_settings() call) must not see the CI's server there.
POSTGRES_URL = selected_postgres_url(os.environ)
os.environ.pop("DATABASE_URL", None)
BACKEND = "postgresql" if POSTGRES_URL else "sqlite"

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
# python-telegram-bot 22 warns (an error under filterwarnings=error) when it builds RetryAfter
# with a plain number; this opts into its timedelta form, which the adapter reads either way.
os.environ.setdefault("PTB_TIMEDELTA", "true")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise RuntimeError(f"a test tried to reach {host}: tests may only use 127.0.0.1")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that reaches anything but this machine."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_on(backend, reason): run only on that backend (sqlite or postgresql), skip with the reason elsewhere",
    )


def pytest_report_header() -> str:
    return f"database backend: {BACKEND}" + (f" ({PostgresServer.describe(POSTGRES_URL)})" if POSTGRES_URL else "")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("only_on"):
        wanted = mark.args[0]
        if wanted not in ("sqlite", "postgresql"):
            raise pytest.UsageError(f"only_on: unknown backend {wanted!r}")
        if wanted != BACKEND:
            pytest.skip(f"{wanted} only: {mark.kwargs['reason']}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """The PostgreSQL server the run was pointed at, or None on SQLite."""
    if POSTGRES_URL is None:
        yield None
        return
    server = PostgresServer(POSTGRES_URL)
    yield server
    server.close()


@pytest.fixture()
def database_url(tmp_path: Path, postgres: PostgresServer | None) -> str:
    """An empty database for one test: a new SQLite file (migrated on first use), or on PostgreSQL
    the run's migrated database with every table emptied (see tests/storage/postgres.py)."""
    if postgres is None:
        return f"sqlite:///{tmp_path / 'test.db'}"
    return postgres.emptied_shared_database()


@pytest.fixture()
def own_database_url(tmp_path: Path, postgres: PostgresServer | None) -> Iterator[str]:
    """A database of the test's own, for tests that start other processes on it: a new SQLite file,
    or a new migrated PostgreSQL database, dropped afterwards whatever the processes left open."""
    if postgres is None:
        yield f"sqlite:///{tmp_path / 'own.db'}"
        return
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@contextmanager
def migrated(url: str) -> Iterator[Database]:
    """The database at `url`, upgraded to the latest migration, disposed of afterwards."""
    db = Database.from_url(url)
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture()
def database(database_url: str) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


@pytest.fixture(scope="session")
def knowledge():  # type: ignore[no-untyped-def]
    """The bundled knowledge base, fitted once for the whole run."""
    from knowledge.service import KnowledgeService

    return KnowledgeService.load(None)


@pytest.fixture()
def bot(database: Database, knowledge):  # type: ignore[no-untyped-def]
    """A conversation with the bot on a recording channel, read like a script (see tests/fakes/bot.py)."""
    from tests.fakes.bot import ScriptedBot

    return ScriptedBot(database, knowledge)


@pytest.fixture()
def fake_bot(database: Database):  # type: ignore[no-untyped-def]
    """A scripted conversation over a small, predictable knowledge base (tests/fakes/knowledge.py)."""
    from tests.fakes.bot import ScriptedBot
    from tests.fakes.knowledge import FakeKnowledge

    return ScriptedBot(database, FakeKnowledge())
