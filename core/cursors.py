"""Persistent poller cursors: read where a poller got to, and move it on in the same breath as the work."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.storage.database import Database
from core.storage.models import PollerCursor


def read_cursor(database: Database, name: str) -> str | None:
    """The saved position of poller `name`, or None before its first run."""
    with database.sessions() as session:
        cursor = session.get(PollerCursor, name)
        return cursor.value if cursor is not None else None


def save_cursor(session: Session, name: str, value: str) -> None:
    """Move poller `name` on to `value`, inside the caller's transaction (with the messages it stored)."""
    cursor = session.get(PollerCursor, name)
    if cursor is None:
        session.add(PollerCursor(name=name, value=value))
    else:
        cursor.value = value
