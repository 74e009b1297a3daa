"""metric_points: one point per (job, name, step)

A worker's heartbeat carries the curve points buffered since the last one. If its commit succeeds
but the reply is lost (a dropped connection), the retry sends the same points again; with a plain
index they were stored twice. The index becomes unique (duplicates already stored are removed
first, keeping the earliest row) and ``add_points`` writes with ON CONFLICT DO UPDATE.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POINTS = sa.table("metric_points", sa.column("id", sa.Integer), sa.column("job_id", sa.Integer),
                   sa.column("name", sa.String), sa.column("step", sa.Integer))


def upgrade() -> None:
    keep = (sa.select(sa.func.min(_POINTS.c.id))
            .group_by(_POINTS.c.job_id, _POINTS.c.name, _POINTS.c.step)
            .scalar_subquery())
    op.execute(sa.delete(_POINTS).where(_POINTS.c.id.not_in(keep)))
    op.drop_index('ix_metric_points_job_name_step', table_name='metric_points')
    op.create_index('ix_metric_points_job_name_step', 'metric_points', ['job_id', 'name', 'step'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_metric_points_job_name_step', table_name='metric_points')
    op.create_index('ix_metric_points_job_name_step', 'metric_points', ['job_id', 'name', 'step'], unique=False)
