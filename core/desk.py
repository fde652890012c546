"""The human desk's side of a conversation: the handoff, the user's messages in the ticket's thread,
the expected wait, and what a message does after a resolution (a rating, or reopening the ticket).

core.inbox calls these in the transaction that answers the user's message; everything meant
for the agents goes into `desk_posts` (core.desk_posts) and reaches Slack afterwards. What
agents do from Slack is in core.desk_actions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core import csat, desk_posts, sla, texts
from core.channels import ChannelRegistry
from core.conversations import State, move
from core.desk_posts import PostKind
from core.desk_summary import Window, mask_numbers, user_name, window_for
from core.dialogue import Reply, Turn
from core.handoff import ACTIVE, HandoffRequest, TicketStatus, move_ticket
from core.intents import Intent, classify
from core.report_text import weekly_report
from core.sla import ServiceLevels
from core.storage.models import ChannelIdentity, Conversation, Message, Ticket, utcnow
from core.timers import WEEKLY_REPORT, Handler

log = logging.getLogger(__name__)

REOPEN_WITHIN = timedelta(days=7)
# Reply windows of channels that may not be live in this process.
WINDOW_HOURS = {"whatsapp": 24}
THREAD_TEXT_LIMIT = 2500


class HumanDesk:
    """The desk as the core sees it: whether it takes handoffs, its service levels and its clock."""

    def __init__(
        self,
        *,
        live: bool,
        levels: ServiceLevels,
        channels: ChannelRegistry,
        agent_reply_template: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.live = live
        self.levels = levels
        self.channels = channels
        self.agent_reply_template = agent_reply_template
        self.clock = clock

    def accepts_handoffs(self) -> bool:
        return self.live

    def now(self) -> datetime:
        return self.clock()

    def window(self, identity: ChannelIdentity) -> Window | None:
        """The identity's reply window, on channels that have one (WhatsApp)."""
        live = self.channels.get(identity.channel)
        hours = live.capabilities.reply_window_hours if live is not None else WINDOW_HOURS.get(identity.channel)
        return window_for(identity, hours)

    def expected_wait(self, channel: str, now: datetime) -> str:
        """What the user is told about the wait: the channel's target, or when the desk opens."""
        hours = self.levels.hours
        if hours.is_open(now):
            return texts.WAIT_OPEN.format(target=sla.describe(self.levels.target(channel)))
        opening = hours.next_opening(now)
        local_now = now.astimezone(hours.zone)
        days = (opening.date() - local_now.date()).days
        day = "today" if days == 0 else "tomorrow" if days == 1 else f"on {opening:%A}"
        return texts.WAIT_CLOSED.format(when=f"{day} at {opening:%H:%M} {opening:%Z}".rstrip())

    def handed_off(self, session: Session, conversation: Conversation, ticket: Ticket, request: HandoffRequest) -> str:
        """Post the ticket's parent (or a line in its thread), start its timers; the wait to tell the user."""
        now = self.now()
        if ticket.waiting_since is None:
            ticket.waiting_since = now
            sla.schedule(session, ticket, self.levels, channel=conversation.channel, start=now)
        if desk_posts.has_parent(session, ticket):
            name = user_name(conversation.identity)
            desk_posts.thread(session, ticket, texts.DESK_ASKED_AGAIN.format(name=name, reason=request.reason))
            desk_posts.refresh(session, ticket)
        else:
            desk_posts.post(session, PostKind.PARENT, ticket=ticket)
        return self.expected_wait(conversation.channel, now)

    def user_wrote(self, session: Session, conversation: Conversation, inbound: Message) -> None:
        """A message from a user whose conversation a person holds: into the ticket's thread."""
        ticket = active_ticket(session, conversation)
        if ticket is None:
            return
        desk_posts.thread(session, ticket, _thread_text(user_name(conversation.identity), inbound))
        if self.window(conversation.identity) is not None:
            desk_posts.refresh(session, ticket)  # the parent shows the window, which this message reopened

    def after_resolution(self, session: Session, conversation: Conversation, inbound: Message) -> Turn | None:
        """A message soon after a resolution: the rating, a comment, or the ticket reopened; None: the bot's."""
        now = self.now()
        ticket = resolved_ticket(session, conversation.id, now)
        intent = classify(inbound.text) if inbound.text else None
        if ticket is None or intent in (Intent.STOP, Intent.START):
            return None
        name = user_name(conversation.identity)
        if ticket.csat_step:
            turn = csat.take(session, ticket, inbound.text, name=name, now=now)
            if turn is not None:
                return turn
            ticket.csat_step = None  # they wrote something else: the survey is over
        if intent in (Intent.THANKS, Intent.GOODBYE) or not (inbound.text or inbound.attachments):
            return None
        return self._reopen(session, conversation, ticket, inbound, now)

    def timer_handlers(self) -> dict[str, Handler]:
        """What each kind of desk timer does when it fires."""
        levels = self.levels
        return {
            sla.REMINDER: lambda session, timer, now: sla.remind(session, timer, levels, now),
            sla.BREACH: lambda session, timer, now: sla.breach(session, timer, levels, now),
            WEEKLY_REPORT: lambda session, timer, now: weekly_report(session, timer, now, zone=levels.hours.zone),
        }

    def _reopen(
        self, session: Session, conversation: Conversation, ticket: Ticket, inbound: Message, now: datetime
    ) -> Turn:
        # Back in the queue; the parent still names who held it last, who is the natural one to claim it.
        move_ticket(ticket, TicketStatus.OPEN)
        conversation.state = move(conversation.state, State.WAITING_FOR_AGENT).value
        ticket.reopened_count += 1
        ticket.reopened_at, ticket.resolved_at, ticket.waiting_since = now, None, now
        name = user_name(conversation.identity)
        desk_posts.thread(session, ticket, texts.DESK_REOPENED.format(name=name))
        desk_posts.thread(session, ticket, _thread_text(name, inbound))
        desk_posts.refresh(session, ticket)
        sla.schedule(session, ticket, self.levels, channel=conversation.channel, start=now)
        log.info("ticket reopened", extra={"conversation_id": conversation.id, "ticket": ticket.reference})
        text = f"{texts.REOPENED.format(reference=ticket.reference)} {self.expected_wait(conversation.channel, now)}"
        return Turn(replies=[Reply(text)], details={"intent": "reopen", "ticket": ticket.reference})


def active_ticket(session: Session, conversation: Conversation) -> Ticket | None:
    """The conversation's ticket that is waiting for, or held by, a person."""
    query = (
        select(Ticket)
        .where(Ticket.conversation_id == conversation.id, Ticket.status.in_(ACTIVE))
        .order_by(Ticket.id.desc())
    )
    return session.scalars(query).first()


def _thread_text(name: str, inbound: Message) -> str:
    text = mask_numbers(inbound.text)
    if len(text) > THREAD_TEXT_LIMIT:
        text = text[: THREAD_TEXT_LIMIT - 1] + "…"
    lines = [texts.DESK_USER_WROTE.format(name=name, text=text or "(no text)")]
    for attachment in inbound.attachments or []:
        url, label = str(attachment.get("url") or ""), str(attachment.get("name") or "attachment")
        if url.startswith(("https://", "http://")):
            lines.append(texts.DESK_ATTACHMENT.format(name=label, url=url))
        else:
            lines.append(f"📎 {label} ({url})")
    return "\n".join(lines)


# A ticket of the conversation resolved since `since` (now less REOPEN_WITHIN).
_RESOLVED_SINCE = (
    Ticket.conversation_id == bindparam("conversation_id"),
    Ticket.status == TicketStatus.RESOLVED.value,
    Ticket.resolved_at >= bindparam("since"),
)
_RESOLVED_TICKET = select(Ticket).where(*_RESOLVED_SINCE).order_by(Ticket.id.desc())
# The same, as one id: for storing a message on a plain connection (core.conversation_rows).
RESOLVED_TICKET_ID = select(Ticket.id).where(*_RESOLVED_SINCE).limit(1)


def resolved_ticket(session: Session, conversation_id: int, now: datetime) -> Ticket | None:
    """The conversation's ticket resolved within the reopen window, if any."""
    return session.scalars(_RESOLVED_TICKET, {"conversation_id": conversation_id, "since": now - REOPEN_WITHIN}).first()
