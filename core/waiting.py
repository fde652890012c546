"""Messages waiting for an answer: the statements by which an answer locks its message's
conversation and reads the messages still waiting in it (core.inbox), one message at a time or a
batch at a time, and those by which the workers find what waits.

Built once, with bound parameters, as every statement of an answer is (core.conversation_rows
says why). Each reads only the rows it needs through the partial indexes on waiting messages;
tests/storage/test_query_plans.py checks SQLite's plans.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from core.storage.models import WAITING, Conversation, Message

# A message's conversation, locked for its answer (Inbox.process), with its identity.
LOCK_CONVERSATION = (
    select(Conversation)
    .where(
        Conversation.id
        == select(Message.conversation_id).where(Message.id == bindparam("message_id")).scalar_subquery()
    )
    .options(joinedload(Conversation.identity, innerjoin=True))  # for the replies' recipient, in the same query
    # FOR NO KEY UPDATE on PostgreSQL: answers of one conversation still take turns, but a message
    # stored for it meanwhile (its foreign key takes a KEY SHARE lock on the row) need not wait
    .with_for_update(of=Conversation, key_share=True)
)
# The conversations of a batch of messages (Inbox.process_all), locked up front in the order of their ids:
# two batches that share conversations then lock them in the same order, never each other's first.
# Loaded with their identities, as LOCK_CONVERSATION loads one.
LOCK_CONVERSATIONS = (
    select(Conversation)
    .where(
        Conversation.id.in_(
            select(Message.conversation_id).where(Message.id.in_(bindparam("message_ids", expanding=True)))
        )
    )
    .options(joinedload(Conversation.identity, innerjoin=True))
    .order_by(Conversation.id)
    .with_for_update(of=Conversation, key_share=True)
)
# A conversation's messages waiting up to one of them. Written with the condition of the partial indexes on waiting messages word for word (WAITING):
# a condition with a bound parameter for 'in' does not tell SQLite's planner that they apply.
WAITING_IN_CONVERSATION = (
    select(Message)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        WAITING,
        Message.id <= bindparam("message_id"),
    )
    .order_by(Message.id)
)
# The same for a batch's conversations (Inbox.process_all), read once under their locks.
WAITING_IN_CONVERSATIONS = (
    select(Message)
    .where(
        Message.conversation_id.in_(bindparam("conversation_ids", expanding=True)),
        WAITING,
        Message.id <= bindparam("message_id"),
    )
    .order_by(Message.id)
)
# Every inbound message still waiting, oldest first (Inbox.pending): each worker runs it every 10 ms
# under load with ANSWERS_BY_WORKERS, so it is built once, as the statements of every answer are.
PENDING = select(Message.id).where(WAITING).order_by(Message.id).limit(bindparam("limit"))
PENDING_BEFORE = PENDING.where(Message.created_at < bindparam("before"))
