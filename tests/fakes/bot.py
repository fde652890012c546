"""A scripted conversation with the bot: `bot.say("hi")` returns what the bot answered."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from sqlalchemy import select

from core.channels import ChannelRegistry
from core.dialogue import Dialogue
from core.faq import KnowledgeBase
from core.handoff import Desk
from core.inbox import Inbox
from core.messages import Attachment, InboundMessage
from core.outbox import Dispatcher
from core.storage.database import Database
from core.storage.models import Conversation, Ticket
from tests.fakes.channels import RecordingChannel

_ids = itertools.count(1)


@dataclass(frozen=True)
class Said:
    """What the bot said in reply to one message: all the text, and the options of the last part."""

    text: str
    options: list[str]

    def __contains__(self, fragment: str) -> bool:
        return fragment.casefold() in self.text.casefold()


class ScriptedBot:
    def __init__(self, database: Database, knowledge: KnowledgeBase, *, desk: Desk | None = None) -> None:
        self.database = database
        self.channel = RecordingChannel("console")
        self.registry = ChannelRegistry([self.channel])
        self.inbox = Inbox(database, Dialogue(knowledge), self.registry, desk=desk)
        self.dispatcher = Dispatcher(database, self.registry)

    def say(
        self,
        text: str,
        *,
        user: str = "user-1",
        attachments: tuple[Attachment, ...] = (),
        message_id: str | None = None,
        send: bool = True,
    ) -> Said:
        """Send `text` as `user`; with `send` False the replies stay queued in the outbox."""
        message = InboundMessage(
            channel="console",
            user_id=user,
            provider_message_id=message_id or f"m{next(_ids)}",
            text=text,
            attachments=attachments,
        )
        before = len(self.channel.sent)
        _accepted, item_ids = self.inbox.handle(message)
        if send:
            asyncio.run(self.dispatcher.dispatch(item_ids))
        sent = self.channel.sent[before:]
        return Said(text="\n".join(m.text for m in sent), options=[o.label for o in sent[-1].options] if sent else [])

    def conversation(self, user: str = "user-1") -> Conversation:
        with self.database.sessions() as session:
            query = select(Conversation).join(Conversation.identity).order_by(Conversation.id.desc())
            found = [c for c in session.scalars(query) if c.identity.user_id == user]
            return found[0]

    def tickets(self) -> list[Ticket]:
        with self.database.sessions() as session:
            return list(session.scalars(select(Ticket).order_by(Ticket.id)))
