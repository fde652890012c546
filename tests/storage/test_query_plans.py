"""The statements run for every message read only the rows they need, however large the tables.

SQLite plans without statistics, by the indexes alone, so its plan for a statement is fixed and
checked here: a statement that reads through an index that does not narrow it to one user or
conversation costs more with every message stored (the rate limit's count once read every
inbound message of every user).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.sql import Executable

import core.conversation_rows
import core.outbox_rows
import core.ratelimit
import core.waiting
from core.storage.database import Database

pytestmark = pytest.mark.only_on(
    "sqlite", reason="PostgreSQL plans from its tables' statistics, so it has no fixed plan to check"
)


def plan(database: Database, statement: Executable, **params: Any) -> str:
    """SQLite's EXPLAIN QUERY PLAN for `statement` with these parameters, one step per '|'."""
    compiled = statement.compile(database.engine)  # type: ignore[attr-defined]
    # expanded: an IN's list becomes one parameter per value, as when the statement runs
    expanded = compiled.construct_expanded_state(params)
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {expanded.statement}",
            tuple(expanded.parameters[name] for name in expanded.positiontup or ()),
        )
        return " | ".join(str(row[3]) for row in rows)


def test_the_rate_limit_count_reads_only_the_identitys_messages(database: Database) -> None:
    steps = plan(database, core.ratelimit._RECENT, identity_id=1, since="2026-01-01 00:00:00", up_to=10)
    assert "ix_messages_conversation_recent (conversation_id=? AND direction=? AND created_at>?)" in steps, steps
    assert "ix_conversations_identity_id (identity_id=?)" in steps, steps
    assert "SCAN" not in steps and "ix_messages_waiting" not in steps, steps


def test_the_slow_down_check_reads_only_the_identitys_messages(database: Database) -> None:
    steps = plan(database, core.ratelimit._NOTIFIED, identity_id=1, since="2026-01-01 00:00:00")
    assert "ix_messages_conversation_recent (conversation_id=? AND direction=? AND created_at>?)" in steps, steps
    assert "SCAN" not in steps, steps


def test_an_answer_reads_only_its_conversations_waiting_messages(database: Database) -> None:
    """Under a backlog, thousands of messages wait: each answer looks only at its conversation's."""
    steps = plan(database, core.waiting.WAITING_IN_CONVERSATION, conversation_id=1, message_id=10)
    assert "ix_messages_waiting_conversation (conversation_id=? AND id<?)" in steps, steps
    assert "SCAN" not in steps and "TEMP B-TREE" not in steps, steps


def test_a_batch_reads_only_its_conversations_waiting_messages(database: Database) -> None:
    steps = plan(database, core.waiting.WAITING_IN_CONVERSATIONS, conversation_ids=[1, 2, 3], message_id=10)
    assert "ix_messages_waiting_conversation (conversation_id=? AND id<?)" in steps, steps
    assert "SCAN" not in steps, steps  # the sort is of the batch's waiting messages alone


def test_a_batchs_lease_looks_only_at_its_rows_and_their_conversations_pending_rows(database: Database) -> None:
    steps = plan(
        database, core.outbox_rows.LEASE_ALL, item_ids=[1, 2, 3], now="2026-01-01 00:00:00", lease="2026-01-01 00:00:30"
    )
    assert "SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)" in steps, steps
    assert "ix_outbox_conversation_pending (conversation_id=? AND status=? AND rowid<?)" in steps, steps
    assert "SCAN" not in steps, steps


@pytest.mark.parametrize("statement", ["PENDING", "PENDING_BEFORE"])
def test_the_workers_read_the_oldest_waiting_messages_without_sorting_the_backlog(
    database: Database, statement: str
) -> None:
    """A worker looks every 10 ms under load: it reads the waiting messages alone, in order."""
    steps = plan(database, getattr(core.waiting, statement), limit=100, before="2026-01-01 00:00:00")
    assert "USING INDEX ix_messages_waiting" in steps or "USING COVERING INDEX ix_messages_waiting" in steps, steps
    assert "ix_messages_waiting_conversation" not in steps and "TEMP B-TREE" not in steps, steps


def test_a_lease_looks_only_at_the_pending_rows_of_the_conversation(database: Database) -> None:
    """A row waits for the earlier pending rows of its conversation: a user's conversation lasts
    until a ticket of theirs is resolved, so the check must not read all its earlier replies."""
    steps = plan(database, core.outbox_rows.LEASE, item_id=1, now="2026-01-01 00:00:00", lease="2026-01-01 00:00:30")
    assert "ix_outbox_conversation_pending (conversation_id=? AND status=? AND rowid<?)" in steps, steps
    assert "SCAN" not in steps, steps


def test_a_message_arriving_reads_its_senders_rows_and_its_own_key_alone(database: Database) -> None:
    """Every webhook runs this first: the sender's identity, its latest conversation and the
    stored copy of the message are each found through an index, whatever the tables hold."""
    steps = plan(database, core.conversation_rows._ARRIVAL, channel="telegram", user_id="42", provider_message_id="7")
    assert "sqlite_autoindex_channel_identities_1 (channel=? AND user_id=?)" in steps, steps
    assert "ix_conversations_identity_id (identity_id=?)" in steps, steps
    assert "sqlite_autoindex_messages_1 (channel=? AND provider_message_id=?)" in steps, steps
    assert "SCAN" not in steps, steps
