"""Cancel requests survive a restart; list newest first by an index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        # server_default: rows written before this revision were never asked to cancel.
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_sweeps_created_at", "sweeps", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sweeps_created_at", table_name="sweeps")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("cancel_requested")
