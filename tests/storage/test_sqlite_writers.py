"""SQLite's writers across processes: a transaction holds a lock on a file beside the database
from BEGIN to COMMIT, so another process waits in the kernel and is woken when it is released,
instead of sleeping in SQLite's busy handler (core.storage.database._FileLock)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from core.storage.database import Database

pytestmark = pytest.mark.only_on("sqlite", reason="the file lock is SQLite's; PostgreSQL locks rows itself")

# Another process tries the lock without waiting: exit status 0 if it got it, 1 if it is held.
_TRY_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
    """
)
# Another process writes 200 rows, one transaction each, through the same engine setup.
_WRITE = textwrap.dedent(
    """
    import sys
    from sqlalchemy import text
    from core.storage.database import Database
    db = Database.from_url(sys.argv[1])
    for n in range(200):
        with db.transaction() as session:
            session.execute(text("INSERT INTO counted (who, n) VALUES ('other', :n)"), {"n": n})
    db.dispose()
    """
)


def _other_process_gets_the_lock(path: Path) -> bool:
    return subprocess.run([sys.executable, "-c", _TRY_LOCK, str(path)], check=False).returncode == 0


def test_a_transaction_holds_the_file_lock_until_it_commits(database: Database, database_url: str) -> None:
    lock = Path(database_url.removeprefix("sqlite:///") + "-writer")
    with database.transaction() as session:
        session.execute(text("SELECT 1"))
        assert lock.exists()
        assert not _other_process_gets_the_lock(lock)
    assert _other_process_gets_the_lock(lock)


def test_a_rolled_back_transaction_releases_it_too(database: Database, database_url: str) -> None:
    lock = Path(database_url.removeprefix("sqlite:///") + "-writer")
    with pytest.raises(RuntimeError), database.transaction() as session:
        session.execute(text("SELECT 1"))
        raise RuntimeError("undone")
    assert _other_process_gets_the_lock(lock)


def test_two_processes_writing_at_once_both_get_every_row_in(database: Database, database_url: str) -> None:
    with database.transaction() as session:
        session.execute(text("CREATE TABLE counted (who TEXT NOT NULL, n INTEGER NOT NULL)"))
    root = Path(__file__).resolve().parents[2]
    other = subprocess.Popen([sys.executable, "-c", _WRITE, database_url], cwd=root)
    for n in range(200):
        with database.transaction() as session:
            session.execute(text("INSERT INTO counted (who, n) VALUES ('this', :n)"), {"n": n})
    assert other.wait(timeout=120) == 0
    with database.transaction() as session:
        counts = dict(session.execute(text("SELECT who, COUNT(*) FROM counted GROUP BY who")).all())
    assert counts == {"this": 200, "other": 200}


def test_an_in_memory_database_has_no_file_lock() -> None:
    database = Database.from_url("sqlite://")
    try:
        with database.transaction() as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()
