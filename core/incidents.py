"""The current-incident note: set and cleared from the desk, shown above the bot's answers while set.

The support policy asks for a communication plan during outages: while a note is set, every
answer the bot gives (those to `outage-status` included) starts with it.

Every answer asks for the note, and it changes a few times a year: a process keeps what it read
for `NOTE_SECONDS` (per database). The transaction that sets or clears a note reads it anew, and
its process forgets what it kept when it commits; other processes see the change within
`NOTE_SECONDS`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core import texts
from core.dialogue import Reply
from core.storage.desk import Incident

MAX_NOTE = 1000
NOTE_SECONDS = 2.0
_CHANGED = "incident_note_changed"  # in Session.info: this transaction set or cleared the note
_kept: WeakKeyDictionary[Any, tuple[float, str | None]] = WeakKeyDictionary()  # per engine: until when, the note
_clock = time.monotonic


def current(session: Session) -> Incident | None:
    """The note in force, if any."""
    return session.scalars(_CURRENT).first()


_CURRENT = select(Incident).where(Incident.cleared_at.is_(None)).order_by(Incident.id.desc()).limit(1)
# Asked before every answer: built once (building a statement costs more than running this one),
# on the table (a statement on the mapped class costs about twice as much to run).
_incidents = Incident.__table__
_CURRENT_TEXT = (
    select(_incidents.c.text).where(_incidents.c.cleared_at.is_(None)).order_by(_incidents.c.id.desc()).limit(1)
)


def set_note(session: Session, text: str, *, agent_id: str, agent_name: str | None, now: datetime) -> Incident:
    """Replace the note in force with `text`, recording who did it."""
    _changing(session)
    clear(session, agent_id=agent_id, agent_name=agent_name, now=now)
    incident = Incident(text=text.strip()[:MAX_NOTE], set_by_id=agent_id, set_by_name=agent_name, created_at=now)
    session.add(incident)
    session.flush()
    return incident


def clear(session: Session, *, agent_id: str, agent_name: str | None, now: datetime) -> Incident | None:
    """End the note in force; the note ended, or None when there was none."""
    _changing(session)
    incident = current(session)
    if incident is not None:
        incident.cleared_at, incident.cleared_by_id, incident.cleared_by_name = now, agent_id, agent_name
        session.flush()  # with_note reads the note without autoflush
    return incident


def with_note(session: Session, replies: list[Reply]) -> list[Reply]:
    """The replies with the current note above the first one, when a note is set."""
    if not replies:
        return replies
    note = _note(session)
    if note is None:
        return replies
    for number, reply in enumerate(replies):
        if reply.redacted is None:  # never above a one-time code
            banner = texts.INCIDENT_BANNER.format(text=note)
            return [*replies[:number], replace(reply, text=f"{banner}\n\n{reply.text}"), *replies[number + 1 :]]
    return replies


def _note(session: Session) -> str | None:
    """The note's text, as kept by this process for `NOTE_SECONDS`, or read."""
    engine, now, changing = session.get_bind(), _clock(), session.info.get(_CHANGED, False)
    kept = None if changing else _kept.get(engine)
    if kept is not None and kept[0] > now:
        return kept[1]
    # Without autoflush: the note does not depend on the answer's pending changes, if any (a
    # handoff's), which are then flushed once, with the rest of the answer.
    with session.no_autoflush:
        note = session.scalar(_CURRENT_TEXT)
    if not changing:  # a change not committed yet is not kept for others
        _kept[engine] = (now + NOTE_SECONDS, note)
    return note


def _changing(session: Session) -> None:
    """This transaction sets or clears the note: it reads the note itself, and the process forgets
    the note it kept once it commits."""
    if not session.info.get(_CHANGED):
        session.info[_CHANGED] = True
        engine = session.get_bind()
        event.listen(session, "after_commit", lambda _session: _kept.pop(engine, None), once=True)
