"""Persistent poller cursors: read where a poller got to, and move it on in the same breath as the work."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from contextlib import suppress
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
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
    try:
        with database.transaction() as session:
            # FOR UPDATE on PostgreSQL: a second process asking at the same moment waits for this
            # answer, then sees the lease taken. SQLite's BEGIN IMMEDIATE already serialises it.
            cursor = session.get(PollerCursor, name, with_for_update=True)
            if cursor is None:
                cursor = PollerCursor(name=name)
                session.add(cursor)
            elif (
                cursor.lease_owner not in (None, owner)
                and cursor.leased_until is not None
                and cursor.leased_until > now
            ):
                return False
            cursor.lease_owner = owner
            cursor.leased_until = now + timedelta(seconds=seconds)
            session.flush()
    except IntegrityError:
        # The poller's first lease ever: another process inserted its row at the same moment
        # (there was no row yet to lock), so that process holds the lease.
        return False
    return True


async def take_lease(database: Database, name: str, *, owner: str, seconds: float) -> bool:
    """`lease_cursor` from a poller's loop, in a thread; a stop (cancellation) meanwhile waits for it.

    Without the wait, a stop's `release_cursor` could run while the lease is still being written
    in its thread: the lease written after the release would then keep every other process from
    polling until it lapsed.
    """
    attempt = asyncio.ensure_future(asyncio.to_thread(lease_cursor, database, name, owner=owner, seconds=seconds))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        with suppress(Exception):
            await attempt
        raise


def release_cursor(database: Database, name: str, *, owner: str) -> None:
    """Give up poller `name`'s lease if `owner` holds it (a clean stop), so another takes over at once."""
    with database.transaction() as session:
        cursor = session.get(PollerCursor, name, with_for_update=True)
        if cursor is not None and cursor.lease_owner == owner:
            cursor.lease_owner, cursor.leased_until = None, None
