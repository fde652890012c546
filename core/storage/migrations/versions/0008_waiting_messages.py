"""Partial indexes on the messages waiting for an answer, in place of ix_messages_unprocessed.

ix_messages_unprocessed (direction, processed_at, conversation_id) held an entry for every
message, inbound and outbound, and answering a message moved its entry (processed_at changed).
Each look of the workers and the sweep for waiting messages (core.inbox's `pending`) read the
whole backlog through it and sorted it by id, every 10 ms per worker under load.

- ix_messages_waiting (id) and ix_messages_waiting_conversation (conversation_id, id) hold the
  waiting messages alone (direction = 'in' AND processed_at IS NULL): the oldest are read in
  order, a conversation's before every answer, and answering or sending a message writes no
  entry in them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 14:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("direction = 'in' AND processed_at IS NULL")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unprocessed")
        batch_op.create_index("ix_messages_waiting", ["id"], sqlite_where=WAITING, postgresql_where=WAITING)
        batch_op.create_index(
            "ix_messages_waiting_conversation",
            ["conversation_id", "id"],
            sqlite_where=WAITING,
            postgresql_where=WAITING,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_waiting_conversation")
        batch_op.drop_index("ix_messages_waiting")
        batch_op.create_index("ix_messages_unprocessed", ["direction", "processed_at", "conversation_id"], unique=False)
