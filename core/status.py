"""The status step: find the record asked about, make sure the asker owns it, then say where it stands.

Runs inside core.inbox's transaction for one message. The step it waits for next (a reference,
a code) goes back in the turn and is stored with the conversation. Everything an asker who is
not the owner hears is the same whether the reference exists or not: the checks that depend on
the record (does it exist, who owns it, where would a code go) only ever change what happens
out of sight, never the words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import texts
from core.channels import ChannelRegistry
from core.dialogue import Reply, StatusAsk, StatusFlow, Turn
from core.handoff import HandoffRequest, open_ticket
from core.intents import bare_reference, code_in, find_record_reference, is_refund_request, record_topic
from core.messages import Option
from core.records import Kind, PlatformRecord, campaign, find, kind_of, owner_of
from core.status_answers import AGENT, MENU, REFUNDABLE_CAMPAIGNS, Clock, describe, money, title_of
from core.storage.models import Conversation, utcnow
from core.storage.records import Campaign, Contribution, Disbursement
from core.verification import Check, CodeRoute, OutboxCodeRoute, Policy, Verifier

DEFAULT_TIMEZONE = "Africa/Johannesburg"
MAX_CHOICES = 5


def default_routes(channels: ChannelRegistry) -> list[CodeRoute]:
    """Codes by SMS when the sms channel is live, else by e-mail when the email channel is."""
    return [OutboxCodeRoute(channels, "sms"), OutboxCodeRoute(channels, "email")]


class StatusService:
    """Answers status questions about the platform's records, for their verified owners only."""

    def __init__(
        self,
        channels: ChannelRegistry,
        *,
        routes: Sequence[CodeRoute] | None = None,
        timezone: ZoneInfo | None = None,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        chosen = default_routes(channels) if routes is None else list(routes)
        self.verifier = Verifier(chosen, policy=policy, clock=clock)
        self.zone = timezone or ZoneInfo(DEFAULT_TIMEZONE)
        self.clock = clock

    def respond(self, session: Session, conversation: Conversation, ask: StatusAsk) -> Turn:
        """The turn for one status message: an answer, a question back, or a code on its way."""
        flow = ask.flow
        reference = ask.reference or find_record_reference(ask.text)
        if reference is None and flow is not None and flow.step == "reference":
            reference = bare_reference(ask.text)
        code = code_in(ask.text) if ask.reference is None else None
        if flow is not None and flow.step == "code" and code and reference in (None, flow.reference):
            assert flow.reference is not None
            return self._check(session, conversation, flow, code)
        carried = flow is not None and (flow.step == "reference" or reference == flow.reference)
        refund = ask.refund or is_refund_request(ask.text) or (carried and flow is not None and flow.intent == "refund")
        topic = record_topic(ask.text) or (flow.topic if flow is not None else None)
        intent = "refund" if refund else "status"
        if reference is None:
            return self._infer(session, conversation, topic=topic, intent=intent)
        return self._look_up(session, conversation, reference.upper(), topic=topic, intent=intent)

    def _infer(self, session: Session, conversation: Conversation, *, topic: str | None, intent: str) -> Turn:
        """No reference given: the asker's own records if known, else ask for the reference."""
        kinds = [Kind.CONTRIBUTION] if intent == "refund" else [Kind(topic)] if topic else list(Kind)
        owned = self.verifier.owned(session, conversation.identity, kinds)
        if len(owned) == 1:
            return self._answer(session, conversation, owned[0], intent=intent)
        if owned:
            action = "refund" if intent == "refund" else "status"
            choices = tuple(
                Option(_label(session, record), f"{action}:{record.reference}") for record in owned[:MAX_CHOICES]
            )
            return _turn(Reply(texts.WHICH_ONE, (*choices, AGENT)), outcome="which_one")
        what, example = texts.REFERENCE_WHAT["contribution" if intent == "refund" else topic]
        reply = Reply(texts.ASK_REFERENCE.format(what=what, example=example), (AGENT, MENU))
        return _turn(reply, outcome="ask_reference", flow=StatusFlow("reference", topic=topic, intent=intent))

    def _look_up(
        self, session: Session, conversation: Conversation, reference: str, *, topic: str | None, intent: str
    ) -> Turn:
        identity = conversation.identity
        if self.verifier.over_limit(session, identity, reference):
            return _turn(Reply(texts.RATE_LIMITED, (AGENT, MENU)), outcome="rate_limited")
        record = find(session, reference)
        owner = owner_of(session, record) if record is not None else None
        if record is not None and owner is not None and self.verifier.owns(session, identity, owner):
            return self._answer(session, conversation, record, intent=intent)
        # From here on the asker is not known to own `reference`, which may not even exist:
        # what they are told must not depend on `record` or `owner` in any way.
        if self.verifier.locked(session, reference):
            return _turn(Reply(texts.LOCKED, (AGENT, MENU)), outcome="locked")
        if not self.verifier.can_send(reference=reference, channel=conversation.channel):
            return _turn(Reply(texts.CODES_UNAVAILABLE, (AGENT, MENU)), outcome="codes_unavailable")
        shown = self.verifier.start(session, asker=conversation, reference=reference, owner=owner)
        replies = [Reply(texts.CODE_SENT)]
        if shown is not None:  # the demo's stand-in for a phone; never for a real record
            replies.append(Reply(shown.text, redacted=shown.redacted))
        flow = StatusFlow("code", reference=reference, topic=topic, intent=intent)
        return Turn(
            replies=replies, sets_flow=True, flow=flow, details={"intent": "status", "outcome": "code_requested"}
        )

    def _check(self, session: Session, conversation: Conversation, flow: StatusFlow, code: str) -> Turn:
        assert flow.reference is not None
        result = self.verifier.check(session, asker=conversation, reference=flow.reference, code=code)
        if result is Check.RIGHT:
            record = find(session, flow.reference)
            assert record is not None  # only a real record's challenge has a code that can be right
            turn = self._answer(session, conversation, record, intent=flow.intent)
            first = turn.replies[0]
            turn.replies[0] = Reply(f"{texts.CODE_RIGHT}\n\n{first.text}", first.options)
        elif result is Check.WRONG:
            turn = Turn(
                replies=[Reply(texts.CODE_WRONG, (AGENT,))], details={"intent": "status", "outcome": "code_wrong"}
            )
        elif result is Check.LOCKED:
            turn = _turn(Reply(texts.LOCKED, (AGENT, MENU)), outcome="locked")
        else:
            turn = _turn(Reply(texts.CODE_EXPIRED, (MENU, AGENT)), outcome="code_expired")
        turn.redact_inbound = True
        return turn

    def _answer(self, session: Session, conversation: Conversation, record: PlatformRecord, *, intent: str) -> Turn:
        """The verified owner's answer (or refund request), ending the status flow."""
        if intent == "refund" and isinstance(record, Contribution):
            return self._refund(session, conversation, record)
        answer = describe(session, record, Clock(self.clock(), self.zone))
        details: dict[str, object] = {
            "intent": "status",
            "outcome": "answered",
            "kind": kind_of(record).value,
            "status": record.status,
        }
        turn = _turn(Reply(answer.text, answer.options), outcome="answered")
        turn.handoff, turn.details = answer.handoff, details
        turn.topic = answer.handoff.topic if answer.handoff else None
        return turn

    def _refund(self, session: Session, conversation: Conversation, contribution: Contribution) -> Turn:
        """A backer asks for their money back: the policy, and a request recorded when it qualifies."""
        parent = campaign(session, contribution.campaign_reference)
        if contribution.status != "succeeded" or contribution.refund_requested_at is not None:
            return self._answer(session, conversation, contribution, intent="status")
        amount = money(contribution.amount, contribution.currency)
        if parent is None or parent.status not in REFUNDABLE_CAMPAIGNS:
            state = texts.CAMPAIGN_STATE.get(parent.status, "is still running") if parent else "is still running"
            text = texts.REFUND_NOT_QUALIFYING.format(reference=contribution.reference, state=state)
            reply = Reply(f"{texts.REFUND_POLICY}\n\n{text}", (AGENT, MENU))
            return _turn(reply, outcome="refund_not_qualifying")
        request = HandoffRequest(reason="refund request", topic="refund-request")
        ticket = open_ticket(session, conversation, request)
        now = self.clock()
        contribution.refund_requested_at, contribution.refund_ticket = now, ticket.reference
        entry = {
            "field": "refund_request",
            "value": "requested in chat",
            "at": now.isoformat(),
            "ticket": ticket.reference,
        }
        contribution.history = [*contribution.history, entry]
        why = texts.REFUND_WHY[parent.status]
        text = texts.REFUND_RECORDED.format(reference=contribution.reference, amount=amount, why=why)
        turn = _turn(Reply(f"{texts.REFUND_POLICY}\n\n{text}"), outcome="refund_requested")
        turn.handoff, turn.topic = request, request.topic
        return turn


def _turn(reply: Reply, *, outcome: str, flow: StatusFlow | None = None) -> Turn:
    """A status turn that replaces the stored flow (by default ending it)."""
    return Turn(replies=[reply], sets_flow=True, flow=flow, details={"intent": "status", "outcome": outcome})


def _label(session: Session, record: PlatformRecord) -> str:
    """How one of the asker's own records is offered in a list: its reference and what it is for."""
    if isinstance(record, Campaign):
        name = record.title
    elif isinstance(record, (Disbursement, Contribution)):
        name = title_of(session, record.campaign_reference)
    else:
        name = record.contest
    return f"{record.reference} · {name}"
