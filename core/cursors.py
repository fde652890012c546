"""Persistent poller cursors: read where a poller got to, and move it on in the same breath as the work."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from core.storage.database import Database
from core.storage.models import PollerCursor, utcnow


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


def new_lease_owner() -> str:
    """A name for one poller in one process, as it appears on the leases it holds."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_cursor(database: Database, name: str, *, owner: str, seconds: float) -> bool:
    """Take or renew poller `name`'s lease for `seconds`; False while another owner's lease runs.

    Several processes may run the same poller (`web` and `worker`): the lease lets one of them
    poll at a time, and a lease whose holder died lapses, so another takes over.
    """
    now = utcnow()
    with database.transaction() as session:
        cursor = session.get(PollerCursor, name, with_for_update=True)
        if cursor is None:
            cursor = PollerCursor(name=name)
            session.add(cursor)
        elif cursor.lease_owner not in (None, owner) and cursor.leased_until is not None and cursor.leased_until > now:
            return False
        cursor.lease_owner = owner
        cursor.leased_until = now + timedelta(seconds=seconds)
        return True


def release_cursor(database: Database, name: str, *, owner: str) -> None:
    """Give up poller `name`'s lease if `owner` holds it (a clean stop), so another takes over at once."""
    with database.transaction() as session:
        cursor = session.get(PollerCursor, name, with_for_update=True)
        if cursor is not None and cursor.lease_owner == owner:
            cursor.lease_owner, cursor.leased_until = None, None
