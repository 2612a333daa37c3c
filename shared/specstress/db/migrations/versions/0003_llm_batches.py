"""Batch mode: provider batch jobs and the requests queued for them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if default else None,
        nullable=nullable,
    )


def _count(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "llm_batch_jobs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_batch_id", sa.Text(), nullable=True),
        sa.Column("input_file_id", sa.Text(), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        _count("succeeded_count"),
        _count("errored_count"),
        _count("expired_count"),
        _count("canceled_count"),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("submitted_at", nullable=True, default=False),
        _timestamp("ended_at", nullable=True, default=False),
        _timestamp("next_poll_at"),
        sa.CheckConstraint(
            "status IN ('submitting', 'submitted', 'ended', 'released', 'failed')",
            name=op.f("ck_llm_batch_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_llm_batch_jobs")),
        sa.UniqueConstraint("provider_batch_id", name=op.f("uq_llm_batch_jobs_provider_batch_id")),
    )
    op.create_index(
        "ix_llm_batch_jobs_stage_status",
        "llm_batch_jobs",
        ["stage", "status", "next_poll_at"],
        unique=False,
    )
    op.create_table(
        "llm_batch_requests",
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'submitted', 'succeeded', 'failed')",
            name=op.f("ck_llm_batch_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["llm_batch_jobs.job_id"],
            name=op.f("fk_llm_batch_requests_job_id_llm_batch_jobs"),
        ),
        sa.PrimaryKeyConstraint("request_hash", name=op.f("pk_llm_batch_requests")),
    )
    op.create_index(
        "ix_llm_batch_requests_queue",
        "llm_batch_requests",
        ["stage", "model_key", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_llm_batch_requests_job_id", "llm_batch_requests", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_llm_batch_requests_job_id", table_name="llm_batch_requests")
    op.drop_index(
        "ix_llm_batch_requests_queue",
        table_name="llm_batch_requests",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("llm_batch_requests")
    op.drop_index("ix_llm_batch_jobs_stage_status", table_name="llm_batch_jobs")
    op.drop_table("llm_batch_jobs")
