"""ablation candidates, diverged results, the method's own memory

* ``ablations.candidates``: the top readings of an ``ambiguous`` or ``unresolved`` ablation
  (component, score, changes, why), so the CLI and the UI can offer them for the user to pick;
* ``results.diverged``: the run finished but its smoothed train loss blew up (> 10x its first value)
  or a dev metric was non-finite; its job ends ``diverged`` and leaderboards rank it last;
* ``results.method_memory_bytes``: the bytes the method itself holds (weights + optimizer state +
  z buffers), tracked by the runner: on CPU, process RSS measures the interpreter, not the method.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ablations') as batch:
        batch.add_column(sa.Column('candidates', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
    with op.batch_alter_table('results') as batch:
        batch.add_column(sa.Column('diverged', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('method_memory_bytes', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('results') as batch:
        batch.drop_column('method_memory_bytes')
        batch.drop_column('diverged')
    with op.batch_alter_table('ablations') as batch:
        batch.drop_column('candidates')
