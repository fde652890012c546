"""The human desk in Slack: tickets' desk columns, the desk's outbox, relays, timers, incidents, announcements.

Tickets gain their parent message in the agents' channel (`desk_channel`, `desk_ts`), the
assignee, the service-level and satisfaction columns, and a reopen count. New tables:
`desk_posts` (messages for the agents' channel waiting to be sent), `desk_relays` (agent
replies passed to users, unique per Slack message), `desk_timers` (service-level reminders and
the weekly report), `desk_actions` (who did what), `incidents` and `announcements`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:27:15.077853

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.String(length=32), nullable=False),
        sa.Column("created_by_name", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.String(length=32), nullable=True),
        sa.Column("decided_by_name", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("as_template", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_announcements")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("set_by_id", sa.String(length=32), nullable=False),
        sa.Column("set_by_name", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by_id", sa.String(length=32), nullable=True),
        sa.Column("cleared_by_name", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_table(
        "desk_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("agent_name", sa.String(length=100), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_desk_actions_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_actions")),
    )
    with op.batch_alter_table("desk_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_actions_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "desk_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=120), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_desk_posts_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_posts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_desk_posts_dedupe_key")),
    )
    with op.batch_alter_table("desk_posts", schema=None) as batch_op:
        batch_op.create_index("ix_desk_posts_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_posts_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "desk_relays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("slack_channel", sa.String(length=32), nullable=False),
        sa.Column("slack_ts", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_desk_relays_message_id_messages")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_desk_relays_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_relays")),
        sa.UniqueConstraint("slack_channel", "slack_ts", name=op.f("uq_desk_relays_slack_channel_slack_ts")),
    )
    with op.batch_alter_table("desk_relays", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_relays_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "desk_timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_desk_timers_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_timers")),
        sa.UniqueConstraint("key", name=op.f("uq_desk_timers_key")),
    )
    with op.batch_alter_table("desk_timers", schema=None) as batch_op:
        batch_op.create_index("ix_desk_timers_due", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_timers_ticket_id"), ["ticket_id"], unique=False)

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("desk_channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("desk_ts", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("assignee_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("assignee_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True))
        # Existing tickets were never reopened.
        batch_op.add_column(sa.Column("reopened_count", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("csat_step", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("csat_score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("csat_comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("csat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_tickets_desk_channel_desk_ts"), ["desk_channel", "desk_ts"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_tickets_desk_channel_desk_ts"), type_="unique")
        batch_op.drop_column("csat_at")
        batch_op.drop_column("csat_comment")
        batch_op.drop_column("csat_score")
        batch_op.drop_column("csat_step")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("reopened_at")
        batch_op.drop_column("reopened_count")
        batch_op.drop_column("sla_breached_at")
        batch_op.drop_column("first_response_at")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("assignee_name")
        batch_op.drop_column("assignee_id")
        batch_op.drop_column("desk_ts")
        batch_op.drop_column("desk_channel")

    with op.batch_alter_table("desk_timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_timers_ticket_id"))
        batch_op.drop_index("ix_desk_timers_due")

    op.drop_table("desk_timers")
    with op.batch_alter_table("desk_relays", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_relays_ticket_id"))

    op.drop_table("desk_relays")
    with op.batch_alter_table("desk_posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_posts_ticket_id"))
        batch_op.drop_index("ix_desk_posts_due")

    op.drop_table("desk_posts")
    with op.batch_alter_table("desk_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_actions_ticket_id"))

    op.drop_table("desk_actions")
    op.drop_table("incidents")
    op.drop_table("announcements")
