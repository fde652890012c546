"""Indexes that narrow the statements run for every answer to one user's rows.

Before every answer, core.ratelimit counts the inbound messages an identity sent within its
window, and core.inbox reads the conversation's messages still waiting for an answer. SQLite's
planner read the first through ix_messages_unprocessed (every inbound message of every user)
and the second through the same index (every message waiting, of every conversation), so an
answer cost more as the table, or a backlog, grew.

- ix_messages_conversation_recent (conversation_id, direction, created_at) replaces the index
  on conversation_id alone, and serves the count as well as everything the old one served;
- ix_messages_unprocessed gains conversation_id as its third column;
- on the outbox, ix_outbox_conversation_pending (conversation_id, status) replaces the index on
  conversation_id alone: a row is leased or claimed only when no earlier row of its conversation
  is pending, which read every earlier row of the conversation (a user's conversation lasts
  until a ticket of theirs is resolved, so months of replies).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:40:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_conversation_recent", ["conversation_id", "direction", "created_at"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_messages_conversation_id"))
        batch_op.drop_index("ix_messages_unprocessed")
        batch_op.create_index("ix_messages_unprocessed", ["direction", "processed_at", "conversation_id"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_conversation_pending", ["conversation_id", "status"], unique=False)
        batch_op.drop_index(batch_op.f("ix_outbox_conversation_id"))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_conversation_id"), ["conversation_id"], unique=False)
        batch_op.drop_index("ix_outbox_conversation_pending")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unprocessed")
        batch_op.create_index("ix_messages_unprocessed", ["direction", "processed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_conversation_id"), ["conversation_id"], unique=False)
        batch_op.drop_index("ix_messages_conversation_recent")
