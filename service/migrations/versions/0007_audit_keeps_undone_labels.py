"""The label audit keeps an undone first label: its row outlives the label, and a `removed`
event records the undo (label_id and after may be null).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_label_audit_label_id_labels"


def upgrade() -> None:
    with op.batch_alter_table("label_audit", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("after", existing_type=sa.String(length=8), nullable=True)
        batch_op.create_foreign_key(FK, "labels", ["label_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    # Undo events, and the rows of labels that were undone, have no label to point at.
    op.execute("DELETE FROM label_audit WHERE label_id IS NULL OR after IS NULL")
    with op.batch_alter_table("label_audit", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.alter_column("after", existing_type=sa.String(length=8), nullable=False)
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(FK, "labels", ["label_id"], ["id"], ondelete="CASCADE")
