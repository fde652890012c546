"""Poller cursors survive a restart (a new Database object on the same file)."""

from __future__ import annotations

from core.cursors import read_cursor, save_cursor
from core.storage.database import Database


def test_a_cursor_is_saved_and_read_back_after_a_restart(database_url: str, database: Database) -> None:
    assert read_cursor(database, "x-dm") is None
    with database.transaction() as session:
        save_cursor(session, "x-dm", "event-100")
    with database.transaction() as session:
        save_cursor(session, "x-dm", "event-200")
    restarted = Database.from_url(database_url)
    assert read_cursor(restarted, "x-dm") == "event-200"
    restarted.dispose()


def test_a_cursor_saved_in_a_failed_transaction_is_not_kept(database: Database) -> None:
    try:
        with database.transaction() as session:
            save_cursor(session, "telegram", "41")
            raise RuntimeError("the work failed")
    except RuntimeError:
        pass
    assert read_cursor(database, "telegram") is None


def test_one_poller_holds_the_lease_until_it_lapses(database: Database) -> None:
    from core.cursors import lease_cursor

    assert lease_cursor(database, "x-dm", owner="web", seconds=60)
    assert not lease_cursor(database, "x-dm", owner="worker", seconds=60)
    assert lease_cursor(database, "x-dm", owner="web", seconds=60)  # the holder renews
    assert lease_cursor(database, "x-dm", owner="web", seconds=-1)  # ...and here lets it lapse at once
    assert lease_cursor(database, "x-dm", owner="worker", seconds=60)
