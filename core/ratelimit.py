"""Rate limits: a flooding channel identity is told once to slow down, and counters per source address.

Per identity, counted in the database so that every web and worker process sees the same
numbers: the inbound messages an identity sent within the window, up to and including the one
being answered. Past the limit the message is stored as usual but marked answered without an
answer; the first such message in a window gets one notice, the rest nothing. STOP and START
always go through (carriers require it), and so does everything while a person holds the
conversation (the bot does not answer then anyway).

Per source address (`AddressLimit`, on the `limits` library), counted in memory per process:
the web door uses it for the platform API's callers and for requests that fail their signature
(see bots.intake).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from core.channels import ChannelRegistry
from core.conversations import bot_may_answer
from core.intents import Intent, classify
from core.messages import Capabilities, OutboundMessage
from core.outbound_rows import write_outbound
from core.storage.database import Database
from core.storage.models import Conversation, Message, utcnow

log = logging.getLogger(__name__)

# Environment-free defaults; the settings RATE_LIMIT_MESSAGES and RATE_LIMIT_WINDOW_SECONDS
# override them where the wiring passes an IdentityLimit.
DEFAULT_MESSAGES = 15
DEFAULT_WINDOW_SECONDS = 60
# What a throttled identity is told, once per window; also how an earlier notice is recognised.
SLOW_DOWN = (
    "You're sending messages faster than I can read them, so I've paused for a moment. "
    "Please wait a minute, then send your question again in one message."
)
THROTTLED = "throttled"  # the key set in an unanswered message's details


@dataclass(frozen=True)
class IdentityLimit:
    """At most `messages` inbound messages per identity within `window` are answered."""

    messages: int = DEFAULT_MESSAGES
    window: timedelta = timedelta(seconds=DEFAULT_WINDOW_SECONDS)

    def __post_init__(self) -> None:
        if self.messages < 1 or self.window <= timedelta(0):
            raise ValueError("a rate limit needs at least one message and a positive window")


class Throttle:
    """Decides, inside the transaction that would answer a message, whether to answer it at all."""

    def __init__(
        self,
        channels: ChannelRegistry | None = None,
        *,
        limit: IdentityLimit | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.channels = channels
        self.limit = limit or IdentityLimit()
        self.clock = clock

    def screen(self, session: Session, conversation: Conversation, inbound: Message) -> list[int] | None:
        """None: answer `inbound` as usual. Otherwise it is marked answered, and the list holds
        the outbox rows of the slow-down notice (empty when the notice went out already)."""
        if inbound.processed_at is not None or inbound.direction != "in" or self._exempt(conversation, inbound):
            return None
        since = self.clock() - self.limit.window
        if self.recent(session, conversation.identity_id, since=since, up_to=inbound.id) <= self.limit.messages:
            return None
        inbound.processed_at = utcnow()
        inbound.details = {**(inbound.details or {}), THROTTLED: True}
        extra = {"channel": conversation.channel, "conversation_id": conversation.id, "message_id": inbound.id}
        if self._notified(session, conversation.identity_id, since=since):
            log.debug("message not answered: sender over the rate limit", extra=extra)
            return []
        log.warning("sender over the rate limit: told to slow down", extra=extra)
        notice = OutboundMessage(
            channel=conversation.channel,
            user_id=conversation.identity.user_id,
            text=SLOW_DOWN,
            conversation_id=conversation.id,
        )
        return write_outbound(session, conversation, notice, capabilities=self._capabilities(conversation.channel))

    def screen_stored(self, database: Database, message_id: int) -> list[int] | None:
        """`screen` for a stored message in a transaction of its own, the conversation locked as
        Inbox.process locks it (so two processes never both send the notice)."""
        with database.transaction() as session:
            inbound = session.get(Message, message_id)
            if inbound is None or inbound.processed_at is not None:
                return None
            conversation = session.get(Conversation, inbound.conversation_id, with_for_update=True)
            if conversation is None:
                return None
            session.refresh(inbound)  # read again under the lock: another process may have answered it
            return self.screen(session, conversation, inbound)

    def recent(self, session: Session, identity_id: int, *, since: datetime, up_to: int | None = None) -> int:
        """Inbound messages from the identity stored since `since` (up to message id `up_to`)."""
        if up_to is None:
            up_to = _NO_LIMIT
        return session.scalar(_RECENT, {"identity_id": identity_id, "since": since, "up_to": up_to}) or 0

    def _notified(self, session: Session, identity_id: int, *, since: datetime) -> bool:
        return session.scalar(_NOTIFIED, {"identity_id": identity_id, "since": since}) is not None

    def _exempt(self, conversation: Conversation, inbound: Message) -> bool:
        if not bot_may_answer(conversation.state):
            return True
        return classify(inbound.text or "") in (Intent.STOP, Intent.START)

    def _capabilities(self, channel: str) -> Capabilities:
        live = self.channels.get(channel) if self.channels is not None else None
        return live.capabilities if live is not None else Capabilities()


# Asked before every answer: built once, with bound parameters (building it cost more than running it).
_NO_LIMIT = 2**31 - 1  # the largest id of an INTEGER column (PostgreSQL refuses a larger bound)
_messages, _conversations = Message.__table__, Conversation.__table__
# The identity's messages through its conversations, as a subquery: joined, SQLite's planner
# read every inbound message of every user through an index on (direction, processed_at), since dropped,
# so each answer cost more as the table grew. Through ix_messages_conversation_recent it reads
# only this identity's messages of the window. tests/storage/test_query_plans.py checks the plan.
_OF_IDENTITY = select(_conversations.c.id).where(_conversations.c.identity_id == bindparam("identity_id"))
_RECENT = (  # on the tables: a statement on the mapped classes costs about twice as much to run
    select(func.count(_messages.c.id)).where(
        _messages.c.conversation_id.in_(_OF_IDENTITY),
        _messages.c.direction == "in",
        _messages.c.created_at >= bindparam("since"),
        _messages.c.id <= bindparam("up_to"),
    )
)
_NOTIFIED = (
    select(_messages.c.id)
    .where(
        _messages.c.conversation_id.in_(_OF_IDENTITY),
        _messages.c.direction == "out",
        _messages.c.created_at >= bindparam("since"),
        _messages.c.text == SLOW_DOWN,
    )
    .limit(1)
)


class AddressLimit:
    """At most `limit` hits per key (a source address) in a fixed window of `window_seconds`,
    counted by the `limits` library in this process's memory.

    Per process on purpose: the counts guard the door against floods, so each web process
    holding its own (a source may get WEB_CONCURRENCY times the limit in all) is good enough,
    and a request refused for its rate never costs a database write. The limit that has to hold
    across processes, per channel identity, is counted in the database (`Throttle`).
    """

    def __init__(self, limit: int, *, window_seconds: int = 60, storage: Storage | None = None) -> None:
        if limit < 1 or window_seconds < 1:
            raise ValueError("a rate limit needs at least one hit and a window of at least a second")
        self.limit = limit
        self.item = RateLimitItemPerSecond(limit, window_seconds)
        self.storage = storage if storage is not None else MemoryStorage()
        self.limiter = FixedWindowRateLimiter(self.storage)

    def hit(self, key: str) -> int:
        """Count one hit for `key`; the hits in the current window, this one included."""
        self.limiter.hit(self.item, key)
        return int(self.storage.get(self.item.key_for(key)))

    def spent(self, key: str) -> bool:
        """Whether `key` has used up its hits in this window."""
        return not self.limiter.test(self.item, key)

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key`'s window ends (at least 1)."""
        reset = self.limiter.get_window_stats(self.item, key).reset_time
        return max(1, math.ceil(reset - time.time()))
