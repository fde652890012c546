"""Inbound messages: store each once, run the dialogue, and write the replies to the outbox.

Store, then answer: `receive` records the message in its own transaction (a provider's retry
finds it there and stops), `process` decides the replies and writes them, the conversation's
new state and the outbox rows in one transaction. A question about the user's own record is
answered by core.status inside that same transaction, and the step it waits for (a reference,
a code) is stored with the conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core import incidents, metrics, texts
from core.channels import ChannelRegistry
from core.conversation_rows import find_inbound, look_up_arrival, store_inbound
from core.conversations import State, move
from core.desk import HumanDesk
from core.dialogue import Context, Dialogue, Reply, StatusFlow, Turn
from core.handoff import Desk, open_ticket
from core.messages import Capabilities, InboundMessage, Option, OutboundMessage
from core.outbound_rows import Outgoing, write_answer, write_outbound
from core.status import StatusService
from core.storage.database import Database, lock_conflict
from core.storage.models import Conversation, Message, Ticket, utcnow
from core.waiting import (
    LOCK_CONVERSATION,
    LOCK_CONVERSATIONS,
    PENDING,
    PENDING_BEFORE,
    WAITING_IN_CONVERSATION,
    WAITING_IN_CONVERSATIONS,
)

log = logging.getLogger(__name__)
# A status question left waiting longer than this (for a reference or a code) is forgotten.
STATUS_FLOW_TTL = timedelta(minutes=30)

# A transaction the server rolled back because of another's locks (a deadlock, a serialization
# failure: SQLSTATE class 40) is tried again this many times in all, then left for the sweep.
CONFLICT_ATTEMPTS = 3


# Decides, before a message is answered, whether to answer it (core.ratelimit.Throttle.screen).
Screen = Callable[[Session, Conversation, Message], "list[int] | None"]
# Told, in the transaction that wrote them, which outbox rows an answer wrote (Inbox.process).
Written = Callable[[Session, "list[int]"], None]
# The same for a batch (Inbox.process_all): each message's rows, in the batch's order.
WrittenAll = Callable[[Session, "list[list[int]]"], None]


@dataclass(frozen=True)
class Accepted:
    """Where an inbound message was stored; `duplicate` when it had been received before."""

    message_id: int
    conversation_id: int
    duplicate: bool


class Inbox:
    """Receives and processes inbound messages for every channel."""

    def __init__(
        self,
        database: Database,
        dialogue: Dialogue,
        channels: ChannelRegistry,
        *,
        desk: Desk | None = None,
        status: StatusService | None = None,
    ) -> None:
        self.database = database
        self.dialogue = dialogue
        self.channels = channels
        self.desk = desk
        self.status = status if status is not None else StatusService(channels)

    def receive(self, message: InboundMessage) -> Accepted:
        """Store `message` once; a second delivery of it returns the first one's record."""
        for attempt in range(3):
            try:
                # statements on the tables alone: a plain connection, not a session
                with self.database.rows() as connection:
                    accepted = self._store(connection, message, attempt=attempt)
            except IntegrityError:
                # A concurrent delivery stored the same message, or the same new user's identity,
                # first: the transaction is rolled back whole; look again in a fresh one.
                if attempt == 2:
                    raise
                continue
            _count([accepted], [message])
            return accepted
        raise AssertionError("unreachable")

    def receive_all(self, messages: Sequence[InboundMessage]) -> list[Accepted]:
        """`receive` for several messages in one transaction, one commit for all (bots.intake
        stores the webhooks waiting for its threads this way), in the order given: a second
        delivery of a message among them is found to be one.

        Any error rolls back every one of them, among them a concurrent store of the same message
        or of the same new user (IntegrityError), which `receive` would look for again: the caller
        then receives them one by one.
        """
        with self.database.rows() as connection:
            accepted = [self._store(connection, message, attempt=0) for message in messages]
        _count(accepted, messages)
        return accepted

    def _store(self, connection: Connection, message: InboundMessage, *, attempt: int) -> Accepted:
        # one statement finds the sender and whether the message was stored; after a failed
        # first try the message itself is looked for too (look_up_arrival)
        arrival = look_up_arrival(connection, message)
        found = arrival.stored if arrival.sender is not None or attempt == 0 else find_inbound(connection, message)
        if found is not None:
            return Accepted(found[0], found[1], duplicate=True)
        message_id, conversation_id = store_inbound(connection, message, now=self._now(), arrival=arrival)
        return Accepted(message_id, conversation_id, duplicate=False)

    def process(self, message_id: int, *, screen: Screen | None = None, written: Written | None = None) -> list[int]:
        """Answer a stored inbound message, once; the ids of the outbox rows written.

        `screen` (core.ratelimit's Throttle.screen) runs first in the same transaction, under
        the conversation's lock: when it returns a list the message is not answered, and the
        list (the outbox rows of a slow-down notice, or none) is returned instead.

        `written` is called with the session and those ids (none at all, too) at the end of the
        transaction that wrote them, before it commits: core.outbox's Dispatcher.lease takes the
        rows for sending there, so that no transaction of its own is needed to claim them. When
        the answer fails and an apology is written instead, it is called again for that one.

        A transaction the database rolled back for another's locks (a deadlock) is not a failure
        to decide: it is tried again, CONFLICT_ATTEMPTS times in all, and then raised, the message
        left unanswered for the sweep rather than apologised for.
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with self.database.transaction() as session:
                    item_ids = self._process(session, message_id, screen)
                    if written is not None:
                        written(session, item_ids)
                    return item_ids
            except Exception as exc:
                if isinstance(exc, DBAPIError) and lock_conflict(exc):
                    if attempt == CONFLICT_ATTEMPTS:
                        raise  # not the dialogue's failure: the message waits for the sweep, unanswered
                    log.info("answer rolled back by a lock conflict, trying again", extra={"message_id": message_id})
                    continue
                # A bug in deciding must not lose the message or leave the user unanswered:
                # record it as answered with an apology, and keep the traceback in the log.
                log.exception("dialogue failed", extra={"message_id": message_id})
                return self._apologise_for(message_id, written)
        raise AssertionError("unreachable")

    def _apologise_for(self, message_id: int, written: Written | None) -> list[int]:
        with self.database.transaction() as session:
            item_ids = self._apologise(session, message_id)
            if written is not None:
                written(session, item_ids)
            return item_ids

    def process_all(
        self, message_ids: Sequence[int], *, screen: Screen | None = None, written: WrittenAll | None = None
    ) -> list[list[int]]:
        """`process` for several messages in one transaction, one commit for all (bots.answering
        answers a lane's batch this way), in the order given: each message's outbox rows.

        The messages' conversations are locked first, in the order of their ids, so that two
        batches sharing conversations take turns instead of deadlocking; their waiting messages
        are then read in one statement, not one per message. `written` is called once, with every
        message's rows, at the end of the transaction. Any error rolls back every answer and is
        raised: the caller then processes the messages one by one, where a failure to decide one
        is answered with an apology.
        """
        answers: list[list[int]] = []
        with self.database.transaction() as session:
            conversations = {
                conversation.id: conversation
                for conversation in session.scalars(LOCK_CONVERSATIONS, {"message_ids": list(message_ids)}).unique()
            }
            waiting: dict[int, Message] = {}  # by id, in order
            if conversations:
                found = session.scalars(
                    WAITING_IN_CONVERSATIONS, {"conversation_ids": list(conversations), "message_id": max(message_ids)}
                )
                waiting = {message.id: message for message in found}
            for message_id in message_ids:
                if message_id not in waiting:
                    answers.append([])  # answered already, or not an inbound message
                    continue
                conversation_id = waiting[message_id].conversation_id
                # Its conversation's messages up to it; one answered with an earlier message of the
                # batch is marked so on its instance.
                queue = [
                    m
                    for m in waiting.values()
                    if m.conversation_id == conversation_id and m.id <= message_id and m.processed_at is None
                ]
                answers.append(self._answer_waiting(session, conversations[conversation_id], queue, message_id, screen))
            if written is not None:
                written(session, answers)
        return answers

    def handle(self, message: InboundMessage) -> tuple[Accepted, list[int]]:
        """Receive and process in one go (console and API); a duplicate is not answered again."""
        accepted = self.receive(message)
        if accepted.duplicate:
            return accepted, []
        return accepted, self.process(accepted.message_id)

    def pending(self, *, before: datetime | None = None, limit: int = 100) -> list[int]:
        """Inbound messages not yet answered (stored before `before`, if given), oldest first."""
        query, params = (
            (PENDING, {"limit": limit}) if before is None else (PENDING_BEFORE, {"limit": limit, "before": before})
        )
        with self.database.rows() as connection:
            return list(connection.scalars(query, params))

    def _process(self, session: Session, message_id: int, screen: Screen | None = None) -> list[int]:
        # The conversation is locked first (found through the message), and its messages read
        # under the lock, so a process that answered this one meanwhile is seen to have.
        conversation = session.scalars(LOCK_CONVERSATION, {"message_id": message_id}).first()
        if conversation is None:
            return []
        waiting = list(
            session.scalars(WAITING_IN_CONVERSATION, {"conversation_id": conversation.id, "message_id": message_id})
        )
        return self._answer_waiting(session, conversation, waiting, message_id, screen)

    def _answer_waiting(
        self,
        session: Session,
        conversation: Conversation,
        waiting: list[Message],
        message_id: int,
        screen: Screen | None,
    ) -> list[int]:
        """Answer `message_id` under its conversation's lock, `waiting` its conversation's messages
        not answered yet up to it: in the order the user wrote, earlier messages still waiting go first."""
        if not waiting or waiting[-1].id != message_id:
            return []  # answered already (or not an inbound message)
        if screen is not None:
            held = screen(session, conversation, waiting[-1])
            if held is not None:
                return held
        return [item for message in waiting for item in self._answer(session, conversation, message)]

    def _answer(self, session: Session, conversation: Conversation, inbound: Message) -> list[int]:
        turn = self._desk_turn(session, conversation, inbound)
        if turn is None:
            context = Context(
                state=State(conversation.state),
                misses=conversation.misses,
                options=tuple(Option(**option) for option in conversation.pending_options),
                has_attachments=bool(inbound.attachments),
                carrier_opt_out=self._capabilities(conversation.channel).carrier_opt_out,
                status_flow=_status_flow(conversation),
            )
            turn = self.dialogue.respond(context, inbound.text)
        if turn.status is not None:
            turn = self.status.respond(session, conversation, turn.status)
        replies = self._apply(session, conversation, turn)
        last_options = replies[-1].options if replies else ()
        # A one-time code the user typed: checked, and not kept.
        kept = texts.CODE_TYPED_REDACTED if turn.redact_inbound else inbound.text
        if "decision" in turn.details:
            metrics.FAQ_DECISIONS.labels(str(turn.details["decision"])).inc()
        return write_answer(
            session,
            conversation,
            inbound,
            answered={"processed_at": utcnow(), "details": turn.details, "text": kept},
            turn={
                "misses": turn.misses,
                "last_topic": turn.topic or conversation.last_topic,
                "pending_options": [{"label": o.label, "value": o.value} for o in last_options],
            },
            replies=self._outgoing(conversation, incidents.with_note(session, replies)),
            capabilities=self._capabilities(conversation.channel),
        )

    def _desk(self) -> HumanDesk | None:
        """The human desk, when it is the real one and takes handoffs now."""
        desk = self.desk
        return desk if isinstance(desk, HumanDesk) and desk.accepts_handoffs() else None

    def _now(self) -> datetime:
        desk = self._desk()
        return desk.now() if desk is not None else utcnow()

    def _desk_turn(self, session: Session, conversation: Conversation, inbound: Message) -> Turn | None:
        """While a person holds the conversation its messages go to the ticket's thread; after a
        resolution, a message may be the rating or reopen the ticket."""
        desk = self._desk()
        if desk is None:
            return None
        if conversation.state in (State.WAITING_FOR_AGENT.value, State.WITH_AGENT.value):
            desk.user_wrote(session, conversation, inbound)
            return None
        if conversation.state == State.RESOLVED.value:
            return desk.after_resolution(session, conversation, inbound)
        return None

    def _apply(self, session: Session, conversation: Conversation, turn: Turn) -> list[Reply]:
        replies = list(turn.replies)
        if turn.handoff is not None:
            ticket = self._hand_off(session, conversation, turn)
            replies += self._handoff_replies(session, conversation, ticket, turn)
        if turn.opt_out is not None:
            conversation.identity.opted_out_at = utcnow() if turn.opt_out else None
        if turn.sets_flow:
            _store_status_flow(conversation, turn.flow)
        return replies

    def _hand_off(self, session: Session, conversation: Conversation, turn: Turn) -> Ticket:
        assert turn.handoff is not None
        ticket = open_ticket(session, conversation, turn.handoff, now=self._now())
        metrics.TICKETS_OPENED.labels(ticket.priority).inc()
        log.info("ticket opened", extra={"conversation_id": conversation.id, "ticket": ticket.reference})
        return ticket

    def _handoff_replies(self, session: Session, conversation: Conversation, ticket: Ticket, turn: Turn) -> list[Reply]:
        """The conversation waits for a person when a desk takes it; what the user is told."""
        assert turn.handoff is not None
        desk_open = self.desk is not None and self.desk.accepts_handoffs()
        wait = None
        if desk_open:
            conversation.state = move(conversation.state, State.WAITING_FOR_AGENT).value
            desk = self._desk()
            if desk is not None:
                wait = desk.handed_off(session, conversation, ticket, turn.handoff)
        return self.dialogue.handoff_replies(ticket.reference, desk_open=desk_open, wait=wait)

    def _apologise(self, session: Session, message_id: int) -> list[int]:
        inbound = session.get(Message, message_id)
        if inbound is None or inbound.processed_at is not None:
            return []
        conversation = session.get(Conversation, inbound.conversation_id)
        assert conversation is not None
        inbound.processed_at = utcnow()
        inbound.details = {"error": "dialogue failed"}
        return self._write_replies(session, conversation, [Reply(texts.SOMETHING_WENT_WRONG)])

    def _write_replies(self, session: Session, conversation: Conversation, replies: list[Reply]) -> list[int]:
        capabilities = self._capabilities(conversation.channel)
        return [
            item_id
            for outgoing in self._outgoing(conversation, replies)
            for item_id in write_outbound(
                session, conversation, outgoing.message, capabilities=capabilities, redacted=outgoing.redacted
            )
        ]

    def _outgoing(self, conversation: Conversation, replies: list[Reply]) -> list[Outgoing]:
        return [
            Outgoing(
                OutboundMessage(
                    channel=conversation.channel,
                    user_id=conversation.identity.user_id,
                    text=reply.text,
                    options=reply.options,
                    conversation_id=conversation.id,
                ),
                redacted=reply.redacted,
            )
            for reply in replies
        ]

    def _capabilities(self, channel: str) -> Capabilities:
        live = self.channels.get(channel)
        return live.capabilities if live is not None else Capabilities()


def _count(accepted: Sequence[Accepted], messages: Sequence[InboundMessage]) -> None:
    """The received and duplicate counters, once the messages' transaction committed."""
    for item, message in zip(accepted, messages, strict=True):
        (metrics.DUPLICATES if item.duplicate else metrics.MESSAGES_RECEIVED).labels(message.channel).inc()


def _status_flow(conversation: Conversation) -> StatusFlow | None:
    since = conversation.status_since
    if conversation.status_step is None or since is None or utcnow() - since > STATUS_FLOW_TTL:
        return None
    return StatusFlow(
        step=conversation.status_step,
        reference=conversation.status_reference,
        topic=conversation.status_topic,
        intent=conversation.status_intent or "status",
    )


def _store_status_flow(conversation: Conversation, flow: StatusFlow | None) -> None:
    if flow is None and conversation.status_step is None and conversation.status_since is None:
        return  # nothing to end: left alone, the conversation has no change for the session to flush
    conversation.status_step = flow.step if flow else None
    conversation.status_reference = flow.reference if flow else None
    conversation.status_topic = flow.topic if flow else None
    conversation.status_intent = flow.intent if flow else None
    conversation.status_since = utcnow() if flow else None
