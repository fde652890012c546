"""Messages: an index on (conversation_id, direction, created_at) in place of the one on conversation_id.

Before every answer, core.ratelimit counts the inbound messages an identity sent within its
window. With only an index on conversation_id, SQLite's planner read every inbound message of
every user through ix_messages_unprocessed to count them, so each answer cost more as the table
grew. The new index serves that count, and everything the old one served (its first column).

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


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_conversation_id"), ["conversation_id"], unique=False)
        batch_op.drop_index("ix_messages_conversation_recent")
