"""Moderation: users with tokens and granted sites, and the label audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "user_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_tokens_token_hash")),
    )
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_tokens_prefix"), ["prefix"], unique=False)

    op.create_table(
        "user_sites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_user_sites_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sites_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "site_id", name=op.f("pk_user_sites")),
    )
    with op.batch_alter_table("user_sites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sites_site_id"), ["site_id"], unique=False)

    op.create_table(
        "label_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("before", sa.String(length=8), nullable=True),
        sa.Column("after", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["comments.id"],
            name=op.f("fk_label_audit_comment_id_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name=op.f("fk_label_audit_label_id_labels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_label_audit_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_audit")),
        sa.UniqueConstraint("label_id", name=op.f("uq_label_audit_label_id")),
    )
    with op.batch_alter_table("label_audit", schema=None) as batch_op:
        batch_op.create_index("ix_label_audit_comment_id_id", ["comment_id", "id"], unique=False)
        batch_op.create_index("ix_label_audit_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_label_audit_user_id"), ["user_id"], unique=False)
    _audit_existing_labels()


def _kind(decision: str | None, label: str) -> str:
    # As service.labels.classify did when this revision was written.
    if decision is None:
        return "unscored"
    if decision == "unsure":
        return "resolution"
    said_spam = decision in ("spam", "discard")
    if label == "ham" and said_spam:
        return "false_positive"
    if label == "spam" and not said_spam:
        return "missed_spam"
    return "confirmation"


def _audit_existing_labels() -> None:
    """Give the labels written before this revision (Akismet feedback) their audit rows."""
    labels = sa.table(
        "labels",
        sa.column("id", sa.Integer()),
        sa.column("comment_id", sa.Uuid()),
        sa.column("label", sa.String()),
        sa.column("source", sa.String()),
        sa.column("actor", sa.String()),
        sa.column("note", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    verdicts = sa.table("verdicts", sa.column("comment_id", sa.Uuid()), sa.column("decision"))
    audit = sa.table(
        "label_audit",
        sa.column("label_id", sa.Integer()),
        sa.column("comment_id", sa.Uuid()),
        sa.column("actor", sa.String()),
        sa.column("source", sa.String()),
        sa.column("before", sa.String()),
        sa.column("after", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("decision", sa.String()),
        sa.column("note", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(labels, verdicts.c.decision)
        .outerjoin(verdicts, verdicts.c.comment_id == labels.c.comment_id)
        .order_by(labels.c.id)
    ).all()
    previous: dict[object, str] = {}
    batch = []
    for row in rows:
        batch.append(
            {
                "label_id": row.id,
                "comment_id": row.comment_id,
                "actor": row.actor,
                "source": row.source,
                "before": previous.get(row.comment_id),
                "after": row.label,
                "kind": _kind(row.decision, row.label),
                "decision": row.decision,
                "note": row.note,
                "created_at": row.created_at,
            }
        )
        previous[row.comment_id] = row.label
    if batch:
        bind.execute(sa.insert(audit), batch)


def downgrade() -> None:
    with op.batch_alter_table("label_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_audit_user_id"))
        batch_op.drop_index("ix_label_audit_created_at")
        batch_op.drop_index("ix_label_audit_comment_id_id")
    op.drop_table("label_audit")
    with op.batch_alter_table("user_sites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sites_site_id"))
    op.drop_table("user_sites")
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_tokens_prefix"))
    op.drop_table("user_tokens")
    op.drop_table("users")
