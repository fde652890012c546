"""The current-incident note: set and cleared from the desk, shown above the bot's answers while set.

The support policy asks for a communication plan during outages: while a note is set, every
answer the bot gives (those to `outage-status` included) starts with it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import texts
from core.dialogue import Reply
from core.storage.desk import Incident

MAX_NOTE = 1000


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
    clear(session, agent_id=agent_id, agent_name=agent_name, now=now)
    incident = Incident(text=text.strip()[:MAX_NOTE], set_by_id=agent_id, set_by_name=agent_name, created_at=now)
    session.add(incident)
    session.flush()
    return incident


def clear(session: Session, *, agent_id: str, agent_name: str | None, now: datetime) -> Incident | None:
    """End the note in force; the note ended, or None when there was none."""
    incident = current(session)
    if incident is not None:
        incident.cleared_at, incident.cleared_by_id, incident.cleared_by_name = now, agent_id, agent_name
        session.flush()  # with_note reads the note without autoflush
    return incident


def with_note(session: Session, replies: list[Reply]) -> list[Reply]:
    """The replies with the current note above the first one, when a note is set."""
    if not replies:
        return replies
    # Without autoflush: the note does not depend on the answer's pending changes, if any (a
    # handoff's), which are then flushed once, with the rest of the answer.
    with session.no_autoflush:
        note = session.scalar(_CURRENT_TEXT)
    if note is None:
        return replies
    for number, reply in enumerate(replies):
        if reply.redacted is None:  # never above a one-time code
            banner = texts.INCIDENT_BANNER.format(text=note)
            return [*replies[:number], replace(reply, text=f"{banner}\n\n{reply.text}"), *replies[number + 1 :]]
    return replies
