"""Status look-ups: the platform's records, one-time-code verification, proactive notifications.

Adds the campaigns, disbursements, contributions and registrations the platform pushes; the
verification tables (challenges, events, identity links); the status step a conversation is
in; and the outbox's `after_send_text`, which replaces a secret once its row is sent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:52:20.065760

"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _record_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _owner_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("owner_name", sa.String(length=200), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=True),
        sa.Column("owner_phone", sa.String(length=20), nullable=True),
    ]


def _owned_indexes(table: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_owner_email"), ["owner_email"], unique=False)
        batch_op.create_index(batch_op.f(f"ix_{table}_owner_phone"), ["owner_phone"], unique=False)


def _keys(table: str) -> list[sa.Constraint]:
    return [
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("reference", name=op.f(f"uq_{table}_reference")),
    ]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "campaigns",
        *_record_columns(),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_raised", sa.Numeric(precision=14, scale=2), nullable=False),
        *_owner_columns(),
        *_keys("campaigns"),
    )
    _owned_indexes("campaigns")

    op.create_table(
        "disbursements",
        *_record_columns(),
        sa.Column("campaign_reference", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("fees", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("net_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("destination_last4", sa.String(length=4), nullable=True),
        sa.Column("expected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("kyc_documents", sa.JSON(), nullable=False),
        *_keys("disbursements"),
    )
    with op.batch_alter_table("disbursements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disbursements_campaign_reference"), ["campaign_reference"], unique=False)

    op.create_table(
        "contributions",
        *_record_columns(),
        sa.Column("campaign_reference", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refund_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_ticket", sa.String(length=16), nullable=True),
        *_owner_columns(),
        *_keys("contributions"),
    )
    with op.batch_alter_table("contributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contributions_campaign_reference"), ["campaign_reference"], unique=False)
    _owned_indexes("contributions")

    op.create_table(
        "registrations",
        *_record_columns(),
        sa.Column("contest", sa.String(length=200), nullable=False),
        sa.Column("fee_status", sa.String(length=32), nullable=False),
        sa.Column("submission_status", sa.String(length=32), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        *_owner_columns(),
        *_keys("registrations"),
    )
    _owned_indexes("registrations")

    op.create_table(
        "identity_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["channel_identities.id"], name=op.f("fk_identity_links_identity_id_channel_identities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_links")),
        sa.UniqueConstraint("identity_id", "kind", "value", name=op.f("uq_identity_links_identity_id_kind_value")),
    )
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_links_identity_id"), ["identity_id"], unique=False)

    op.create_table(
        "verification_challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("proves_kind", sa.String(length=8), nullable=True),
        sa.Column("proves_value", sa.String(length=320), nullable=True),
        sa.Column("sent_via", sa.String(length=16), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identities.id"],
            name=op.f("fk_verification_challenges_identity_id_channel_identities"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_verification_challenges_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_challenges")),
    )
    with op.batch_alter_table("verification_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verification_challenges_identity_id"), ["identity_id"], unique=False)
        batch_op.create_index("ix_verification_challenges_reference", ["reference", "created_at"], unique=False)

    op.create_table(
        "verification_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identities.id"],
            name=op.f("fk_verification_events_identity_id_channel_identities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_events")),
    )
    with op.batch_alter_table("verification_events", schema=None) as batch_op:
        batch_op.create_index("ix_verification_events_identity", ["identity_id", "created_at"], unique=False)
        batch_op.create_index("ix_verification_events_reference", ["reference", "event"], unique=False)

    op.create_table(
        "status_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("change", sa.String(length=64), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identities.id"],
            name=op.f("fk_status_notifications_identity_id_channel_identities"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_status_notifications_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_notifications")),
    )
    with op.batch_alter_table("status_notifications", schema=None) as batch_op:
        batch_op.create_index("ix_status_notifications_record", ["kind", "reference"], unique=False)

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_step", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("status_reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("status_topic", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("status_intent", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("status_since", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("after_send_text", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("after_send_text")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("status_since")
        batch_op.drop_column("status_intent")
        batch_op.drop_column("status_topic")
        batch_op.drop_column("status_reference")
        batch_op.drop_column("status_step")

    for table in (
        "status_notifications",
        "verification_events",
        "verification_challenges",
        "identity_links",
        "registrations",
        "contributions",
        "disbursements",
        "campaigns",
    ):
        op.drop_table(table)  # their indexes go with them
