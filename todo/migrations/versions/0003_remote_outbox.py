"""The remote's outbox: ``todo_completed``'s events, written with the todo.

``tocsin.contrib.sqlalchemy.Outbox``'s table (see todo/remote.py): an event waits
here until it is published to Redis, after the commit, or by a worker's relay if
Redis was down then.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "tocsin_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tocsin_outbox")),
    )
    op.create_index(op.f("ix_tocsin_outbox_created_at"), "tocsin_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tocsin_outbox_created_at"), table_name="tocsin_outbox")
    op.drop_table("tocsin_outbox")
