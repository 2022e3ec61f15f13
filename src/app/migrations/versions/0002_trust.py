"""session and API tokens, login throttles, worker heartbeats

Revision ID: 0002_trust
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_trust"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_token", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("api_token_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_user_api_token_hash", ["api_token_hash"], unique=True)
    op.create_table(
        "login_throttle",
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "worker_beat",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("worker_beat")
    op.drop_table("login_throttle")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index("ix_user_api_token_hash")
        batch_op.drop_column("api_token_hash")
        batch_op.drop_column("session_token")
