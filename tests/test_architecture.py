"""The house's shape: imports point inward, and no table is made outside a migration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_imports_point_inward() -> None:
    # import-linter's contract in pyproject.toml: bots -> adapters | knowledge -> core.
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_no_table_is_created_outside_a_migration() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("core", "adapters", "knowledge", "bots")
        for path in (ROOT / folder).rglob("*.py")
        if "create_all(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_the_migrations_match_the_models(database) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.storage.models import Base

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.only_on("sqlite", reason="WAL is a SQLite journal mode; PostgreSQL has its own write-ahead log, always on")
def test_sqlite_runs_in_wal_mode(database) -> None:  # type: ignore[no-untyped-def]
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
