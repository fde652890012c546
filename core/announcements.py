"""Announcements from the desk: drafted with the number of people they will reach, then confirmed and sent.

The audience is everyone who wrote to the bot in the last 14 days on a channel it can message,
and has not opted out or become unreachable. Messages go through the outbox, spread out at a
rate each provider accepts, and on WhatsApp outside the 24-hour window as the configured
template, or not at all. Drafting and sending are recorded with who did them.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import texts
from core.channels import ChannelRegistry
from core.conversation_rows import open_conversation
from core.messages import Capabilities, OutboundMessage, Template
from core.outbound_rows import write_outbound
from core.proactive import ANSWER_ONLY_CHANNELS, WINDOW_HOURS
from core.storage.desk import Announcement
from core.storage.models import ChannelIdentity, OutboxItem

log = logging.getLogger(__name__)

AUDIENCE_DAYS = 14
MAX_TEXT = 1000
# Messages per second per channel that the providers take from one sender without throttling:
# Telegram's broadcast limit is about 30/s (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this),
# a Twilio SMS long code 1/s, WhatsApp senders far more; Slack about 1 message/s; X DMs are
# limited per day, so slowly.
SEND_RATE = {"telegram": 25.0, "whatsapp": 10.0, "sms": 1.0, "slack": 1.0, "x": 0.5}


def recipients(session: Session, now: datetime) -> list[ChannelIdentity]:
    """Who an announcement reaches now."""
    query = select(ChannelIdentity).where(
        ChannelIdentity.last_seen_at >= now - timedelta(days=AUDIENCE_DAYS),
        ChannelIdentity.opted_out_at.is_(None),
        ChannelIdentity.unreachable_at.is_(None),
        ChannelIdentity.channel.not_in(ANSWER_ONLY_CHANNELS),
    )
    return list(session.scalars(query.order_by(ChannelIdentity.id)))


def draft(
    session: Session,
    text: str,
    *,
    agent_id: str,
    agent_name: str | None,
    now: datetime,
    channels: ChannelRegistry,
    template_sid: str | None,
) -> Announcement:
    """A draft, with how many people on each channel it would reach (`audience`) and how many it
    would leave out (`skipped`: WhatsApp users outside the window when no template is set)."""
    audience: Counter[str] = Counter()
    left_out = 0
    for identity in recipients(session, now):
        if _window_closed(identity, channels, now) and template_sid is None:
            left_out += 1
        else:
            audience[identity.channel] += 1
    announcement = Announcement(
        text=text.strip()[:MAX_TEXT],
        audience=dict(sorted(audience.items())),
        created_by_id=agent_id,
        created_by_name=agent_name,
        created_at=now,
        skipped=left_out,
    )
    session.add(announcement)
    session.flush()
    return announcement


def cancel(session: Session, announcement_id: int, *, agent_id: str, agent_name: str | None, now: datetime) -> bool:
    """Drop a draft; False when it was already sent or dropped."""
    return _decide(session, announcement_id, "cancelled", agent_id=agent_id, agent_name=agent_name, now=now)


def send(
    session: Session,
    announcement_id: int,
    *,
    agent_id: str,
    agent_name: str | None,
    now: datetime,
    channels: ChannelRegistry,
    template_sid: str | None,
) -> Announcement | None:
    """Queue the announcement for its audience as it is now; None when it is not a draft (a second click)."""
    if not _decide(session, announcement_id, "sent", agent_id=agent_id, agent_name=agent_name, now=now):
        return None
    announcement = session.get(Announcement, announcement_id)
    assert announcement is not None
    sent_per_channel: Counter[str] = Counter()
    announcement.queued = announcement.as_template = announcement.skipped = 0  # counted again, as sent
    for identity in recipients(session, now):
        template = None
        if _window_closed(identity, channels, now):
            if template_sid is None:
                announcement.skipped += 1
                continue
            template = Template(template_sid, (("1", announcement.text),))
            announcement.as_template += 1
        delay = sent_per_channel[identity.channel] / SEND_RATE.get(identity.channel, 1.0)
        _queue(session, identity, announcement.text, template, channels, not_before=now + timedelta(seconds=delay))
        sent_per_channel[identity.channel] += 1
        announcement.queued += 1
    log.info("announcement queued", extra={"announcement_id": announcement.id, "queued": announcement.queued})
    return announcement


def _decide(
    session: Session, announcement_id: int, status: str, *, agent_id: str, agent_name: str | None, now: datetime
) -> bool:
    changed = session.execute(
        update(Announcement)
        .where(Announcement.id == announcement_id, Announcement.status == "draft")
        .values(status=status, decided_by_id=agent_id, decided_by_name=agent_name, decided_at=now)
    ).rowcount
    session.expire_all()
    return changed == 1


def _window_closed(identity: ChannelIdentity, channels: ChannelRegistry, now: datetime) -> bool:
    live = channels.get(identity.channel)
    hours = live.capabilities.reply_window_hours if live is not None else WINDOW_HOURS.get(identity.channel)
    if hours is None:
        return False
    return identity.last_seen_at is None or now - identity.last_seen_at > timedelta(hours=hours)


def _queue(
    session: Session,
    identity: ChannelIdentity,
    text: str,
    template: Template | None,
    channels: ChannelRegistry,
    *,
    not_before: datetime,
) -> None:
    conversation = open_conversation(session, identity)
    live = channels.get(identity.channel)
    message = OutboundMessage(
        channel=identity.channel,
        user_id=identity.user_id,
        text=texts.ANNOUNCEMENT.format(text=text),
        conversation_id=conversation.id,
        template=template,
    )
    capabilities = live.capabilities if live is not None else Capabilities()
    item_ids = write_outbound(session, conversation, message, capabilities=capabilities, author="system")
    session.execute(update(OutboxItem).where(OutboxItem.id.in_(item_ids)).values(next_attempt_at=not_before))
