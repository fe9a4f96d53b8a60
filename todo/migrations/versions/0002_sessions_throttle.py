"""Server-side login sessions, the login throttle, usernames unique whatever their case.

* ``user_sessions``: one row per login session (logging out deletes it).
* ``login_throttle`` replaces ``login_failures`` and ``users.locked_until``.
* Usernames are NFKC-normalized and unique case-insensitively. Accounts made
  before that whose names now collide ("eve" and "EVE") keep the oldest name;
  the others are renamed ``<name>.<id>`` and reported in a warning, so that no
  account is lost and each can still log in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

log = logging.getLogger("todo.migrations")
USERNAME_MAX = 40


def _unique_usernames() -> None:
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id))
    taken: set[str] = set()
    renames: dict[int, str] = {}
    for ident, name in rows.all():
        normal = unicodedata.normalize("NFKC", name)
        candidate, clashes = normal, 0
        while candidate.lower() in taken:
            clashes += 1
            suffix = f".{ident}" if clashes == 1 else f".{ident}.{clashes}"
            candidate = normal[: USERNAME_MAX - len(suffix)] + suffix
        taken.add(candidate.lower())
        if candidate != name:
            renames[ident] = candidate
    for ident, name in renames.items():
        connection.execute(users.update().where(users.c.id == ident).values(username=name))
        log.warning("username of account %d changed to %r (unique whatever the case)", ident, name)


def upgrade() -> None:
    _unique_usernames()
    # Not batch mode: on SQLite it copies and drops the users table, and dropping
    # it with foreign keys enforced would delete every todo (ON DELETE CASCADE).
    # SQLite 3.35+ drops a plain column in place.
    op.drop_column("users", "locked_until")
    op.create_index(
        "uq_users_username_lower", "users", [sa.literal_column("lower(username)")], unique=True
    )
    op.drop_index("ix_login_failures_username_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index(op.f("ix_login_throttle_window_start"), "login_throttle", ["window_start"])


def downgrade() -> None:
    op.drop_index(op.f("ix_login_throttle_window_start"), table_name="login_throttle")
    op.drop_table("login_throttle")
    op.drop_index(op.f("ix_user_sessions_expires_at"), table_name="user_sessions")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(
        "ix_login_failures_username_at", "login_failures", ["username", "at"], unique=False
    )
    op.drop_index("uq_users_username_lower", table_name="users")
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
