"""The PostgreSQL pool without a ping at every checkout: a connection the server dropped while it
sat idle is replaced before use; one dropped under load fails its statement once (503 to the
webhook, which the provider retries) and takes every older connection of the pool with it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.storage import database as engines
from core.storage.database import Database

pytestmark = pytest.mark.only_on("postgresql", reason="no server drops a SQLite file's connections")


def _backend(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    other = Database.from_url(database_url)
    try:
        with other.transaction() as session:
            assert session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        other.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(database)
    _terminate(database_url, first)
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has sat idle long enough
    assert _backend(database) != first  # no error: a new connection took its place


def test_a_connection_in_steady_use_is_not_pinged_and_a_drop_costs_one_statement(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 3600.0)  # never idle long enough
    first = _backend(database)
    _terminate(database_url, first)
    with pytest.raises(OperationalError):
        _backend(database)
    assert _backend(database) != first  # the pool let the dead connection go
