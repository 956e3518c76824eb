"""Per-site adapters: each site's own correction to the shared model, learned from its labels.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_adapters",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("n_spam", sa.Integer(), nullable=False),
        sa.Column("n_ham", sa.Integer(), nullable=False),
        sa.Column("labels_seen", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_site_adapters_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", name="pk_site_adapters"),
    )


def downgrade() -> None:
    op.drop_table("site_adapters")
