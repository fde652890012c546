"""The satisfaction survey after a ticket is resolved: a rating from 1 to 5, then an optional comment."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.orm import Session

from core import desk_posts, texts
from core.desk_summary import mask_numbers
from core.dialogue import Reply, Turn
from core.intents import Intent, classify
from core.messages import Option
from core.storage.models import Ticket

RATING, COMMENT = "rating", "comment"
SKIP = Option(texts.NO_COMMENT, "csat:none")
MAX_COMMENT = 2000
# "5", "5/5", "4 stars", "3 - slow but helpful": the number first, an optional comment after it.
_RATING = re.compile(
    r"^\s*([1-5])(?!\d)\s*(?:/\s*5|out of 5|stars?|★+|\((?:poor|excellent)\))?[\s,.:;!)\-–]*(.*)$",
    re.IGNORECASE | re.DOTALL,
)


def rating_options() -> tuple[Option, ...]:
    """Buttons (or a numbered list) 1 to 5; each comes back as its number."""
    return tuple(Option(label, str(number)) for number, label in enumerate(texts.RATING_LABELS, start=1))


def ask(ticket: Ticket) -> None:
    """The survey starts: the next message is read as a rating."""
    ticket.csat_step = RATING


def take(session: Session, ticket: Ticket, text: str, *, name: str, now: datetime) -> Turn | None:
    """Read `text` as the awaited rating or comment; None when it is neither (the user moved on)."""
    if ticket.csat_step == RATING:
        match = _RATING.match(text)
        if match is None:
            return None
        ticket.csat_score, ticket.csat_at = int(match.group(1)), now
        desk_posts.thread(session, ticket, texts.DESK_RATED.format(name=name, score=ticket.csat_score))
        comment = match.group(2).strip()
        if comment:
            return _comment(session, ticket, comment, name=name)
        ticket.csat_step = COMMENT
        return Turn(
            replies=[Reply(texts.ASK_COMMENT, (SKIP,))], details={"intent": "csat", "rating": ticket.csat_score}
        )
    if ticket.csat_step == COMMENT:
        answer = text.strip().casefold()
        if answer in (SKIP.value, SKIP.label.casefold()) or classify(text) in (Intent.NO, Intent.THANKS):
            ticket.csat_step = None
            return Turn(replies=[Reply(texts.RATING_THANKS)], details={"intent": "csat"})
        return _comment(session, ticket, text, name=name)
    return None


def _comment(session: Session, ticket: Ticket, comment: str, *, name: str) -> Turn:
    ticket.csat_comment, ticket.csat_step = comment[:MAX_COMMENT], None
    desk_posts.thread(session, ticket, texts.DESK_COMMENTED.format(name=name, comment=mask_numbers(comment[:500])))
    return Turn(replies=[Reply(texts.RATING_THANKS)], details={"intent": "csat", "comment": True})
