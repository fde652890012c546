"""Telling a record's owner when the platform changes its status, on the last channel they wrote from.

The owner's identities are those that write from the record's verified phone (SMS, WhatsApp)
and those linked to its phone or e-mail by a one-time code. The one that wrote to the bot
last, and has not opted out, gets a short message through the outbox. Where the channel has a
reply window (WhatsApp: 24 hours from the user's last message) and it has closed, the message
goes as the provider-approved template configured for that change, or not at all. Every
change is recorded in `status_notifications` with what was done: text, template, skipped
(window closed, no template) or no_one (the owner has not talked to the bot, or opted out).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from core import texts
from core.channels import ChannelRegistry
from core.conversation_rows import open_conversation
from core.messages import Capabilities, OutboundMessage, Template
from core.outbound_rows import write_outbound
from core.records import Change, Kind, Owner, PlatformRecord, Upserted, campaign, find, owner_of
from core.status_answers import Clock, destination, money, title_of, words
from core.storage.models import ChannelIdentity, IdentityLink, OutboxItem, utcnow
from core.storage.records import Campaign, Contribution, Disbursement, StatusNotification
from core.verification import PHONE_CHANNELS

log = logging.getLogger(__name__)
# Reply windows of channels that may not be live in this process (the web process has them all).
WINDOW_HOURS = {"whatsapp": 24}
# Channels that only answer the person in front of them: the platform API returns replies in its
# HTTP response, the terminal prints them to whoever is typing. Nothing pushed there is ever seen.
ANSWER_ONLY_CHANNELS = ("api", "console")
_ENTRY_FIELD = {"submission_status": "submission", "fee_status": "fee", "status": "status"}
# disbursement.sent, contribution.refunded, campaign.cancelled, registration.submission.accepted, ...
TEMPLATE_KEY = re.compile(
    r"(?:(?:campaign|disbursement|contribution)|registration\.(?:submission|fee|status))\.[a-z_]+"
)


def change_key(kind: Kind, change: Change) -> str:
    """The name of a change, as WHATSAPP_STATUS_TEMPLATES keys it."""
    if kind is Kind.REGISTRATION:
        return f"registration.{_ENTRY_FIELD[change.field]}.{change.new}"
    return f"{kind.value}.{change.new}"


class Notifier:
    """Writes the proactive update for one upsert, in the upsert's transaction."""

    def __init__(
        self,
        channels: ChannelRegistry,
        *,
        templates: Mapping[str, str] | None = None,
        timezone: ZoneInfo | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.channels = channels
        self.templates = dict(templates or {})
        self.zone = timezone or ZoneInfo("Africa/Johannesburg")
        self.clock = clock

    def notify(self, session: Session, upserted: Upserted) -> list[int]:
        """Tell the owner about the status change in `upserted`, if any; the outbox rows written."""
        if not upserted.changes:
            return []
        record = find(session, upserted.reference)
        assert record is not None
        change = upserted.changes[0]  # the most telling one: STATUS_FIELDS lists them in that order
        key = change_key(upserted.kind, change)
        owner = owner_of(session, record)
        identity = recipient(session, owner) if owner is not None else None
        if identity is None:
            reason = "the owner has not written to the bot on a channel it can message, or opted out"
            return self._record(session, upserted, key, delivery="no_one", reason=reason)
        text, variables = self._message(session, record, change)
        window = self._window_hours(identity.channel)
        template = None
        if window is not None and self._closed(identity, window):
            if key not in self.templates:
                reason = f"outside the {window}-hour window, and no template is set for {key}"
                return self._record(session, upserted, key, delivery="skipped", reason=reason, identity=identity)
            template = Template(self.templates[key], variables)
        conversation = open_conversation(session, identity)
        message = OutboundMessage(
            channel=identity.channel,
            user_id=identity.user_id,
            text=text,
            conversation_id=conversation.id,
            template=template,
        )
        capabilities = self._capabilities(identity.channel)
        item_ids = write_outbound(session, conversation, message, capabilities=capabilities, author="system")
        first = session.get(OutboxItem, item_ids[0])
        assert first is not None
        delivery = "template" if template else "text"
        self._record(session, upserted, key, delivery=delivery, identity=identity, message_id=first.message_id)
        return item_ids

    def _record(
        self,
        session: Session,
        upserted: Upserted,
        key: str,
        *,
        delivery: str,
        reason: str | None = None,
        identity: ChannelIdentity | None = None,
        message_id: int | None = None,
    ) -> list[int]:
        session.add(
            StatusNotification(
                kind=upserted.kind.value,
                reference=upserted.reference,
                change=key,
                delivery=delivery,
                reason=reason,
                identity_id=identity.id if identity else None,
                message_id=message_id,
            )
        )
        log.info(
            "status change %s: %s",
            key,
            delivery,
            extra={"reference": upserted.reference, "identity_id": identity.id if identity else None},
        )
        return []

    def _closed(self, identity: ChannelIdentity, window_hours: int) -> bool:
        last = identity.last_seen_at
        return last is None or self.clock() - last > timedelta(hours=window_hours)

    def _window_hours(self, channel: str) -> int | None:
        live = self.channels.get(channel)
        return live.capabilities.reply_window_hours if live is not None else WINDOW_HOURS.get(channel)

    def _capabilities(self, channel: str) -> Capabilities:
        live = self.channels.get(channel)
        return live.capabilities if live is not None else Capabilities()

    def _message(
        self, session: Session, record: PlatformRecord, change: Change
    ) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The update in words, and the same facts as template variables {{1}}, {{2}}..."""
        clock = Clock(self.clock(), self.zone)
        if isinstance(record, Disbursement):
            text, values = _payout_update(session, record, clock)
        elif isinstance(record, Contribution):
            text, values = _contribution_update(session, record, clock)
        elif isinstance(record, Campaign):
            state = texts.CAMPAIGN_STATE.get(record.status, f"is now {words(record.status, {})}")
            raised = money(record.amount_raised, record.currency)
            text, values = (
                texts.NOTIFY_CAMPAIGN.format(title=record.title, state=state, raised=raised),
                [record.title, state, raised],
            )
        else:
            field = texts.NOTIFY_ENTRY_FIELD[change.field]
            known = {
                "submission_status": texts.SUBMISSION,
                "fee_status": texts.FEE,
                "status": texts.REGISTRATION_STATUS,
            }
            value = words(change.new, known[change.field])
            text, values = (
                texts.NOTIFY_ENTRY.format(contest=record.contest, field=field, value=value),
                [record.contest, field, value],
            )
        text += texts.NOTIFY_REFERENCE.format(reference=record.reference)
        values.append(record.reference)
        return text, tuple((str(number), value) for number, value in enumerate(values, start=1))


def _payout_update(session: Session, payout: Disbursement, clock: Clock) -> tuple[str, list[str]]:
    title, net = title_of(session, payout.campaign_reference), money(payout.net_amount, payout.currency)
    when, method = clock.when(payout.paid_at), texts.METHOD[payout.method]
    expected = texts.PAYOUT_EXPECTED.format(date=clock.day(payout.expected_at)) if payout.expected_at else ""
    reason = texts.REASON.format(reason=payout.failure_reason.rstrip(".")) if payout.failure_reason else ""
    template = texts.NOTIFY_PAYOUT.get(payout.status, "Your payout of {net} for {title} is now {status}.")
    text = template.format(
        net=net,
        title=title,
        method=method,
        when=when,
        expected=expected,
        reason=reason,
        destination=destination(payout),
        status=words(payout.status, {}),
    )
    return text, [net, title, method, when]


def _contribution_update(session: Session, contribution: Contribution, clock: Clock) -> tuple[str, list[str]]:
    parent = campaign(session, contribution.campaign_reference)
    title = parent.title if parent else texts.YOUR_CAMPAIGN
    amount, when = money(contribution.amount, contribution.currency), clock.when(contribution.updated_at)
    template = texts.NOTIFY_CONTRIBUTION.get(
        contribution.status, "Your contribution of {amount} to {title} is now {status}."
    )
    text = template.format(amount=amount, title=title, when=when, status=words(contribution.status, {}))
    return text, [amount, title, when]


def recipient(session: Session, owner: Owner) -> ChannelIdentity | None:
    """The owner's identity that wrote to the bot last, can be messaged and has not opted out, if any."""
    matches: list[ColumnElement[bool]] = []
    if owner.phone:
        matches.append(
            ChannelIdentity.channel.in_(PHONE_CHANNELS)
            & ChannelIdentity.user_id.in_([owner.phone, f"whatsapp:{owner.phone}"])
        )
    proofs = [("phone", owner.phone), ("email", owner.email)]
    linked = select(IdentityLink.identity_id).where(
        or_(*[(IdentityLink.kind == kind) & (IdentityLink.value == value) for kind, value in proofs if value])
    )
    if owner.phone or owner.email:
        matches.append(ChannelIdentity.id.in_(linked))
    if not matches:
        return None
    query = (
        select(ChannelIdentity)
        .where(
            or_(*matches),
            ChannelIdentity.channel.not_in(ANSWER_ONLY_CHANNELS),
            ChannelIdentity.last_seen_at.is_not(None),
            ChannelIdentity.opted_out_at.is_(None),
            ChannelIdentity.unreachable_at.is_(None),
        )
        .order_by(ChannelIdentity.last_seen_at.desc())
    )
    return session.scalars(query).first()
