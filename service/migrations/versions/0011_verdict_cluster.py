"""Verdicts carry a near-copy group key, so that the moderation queue shows one comment of a
group of near-copies before a second one (its `review` order).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both databases (SQLite has dropped columns since 3.35): a batch
# operation would rebuild the table on SQLite and lose its expression index ix_verdicts_queue.


def upgrade() -> None:
    op.add_column("verdicts", sa.Column("cluster", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("verdicts", "cluster")
