"""The schema Alembic's revisions build is the one the models describe, on every database: a revision
that drops or adds an index, a column or a constraint without the model (or the other way round) fails
here, not in a query plan later."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import pipam.ipam.drivers.internal.models  # noqa: F401  (the internal driver's tables, in the same metadata)
from pipam.db.base import Base


def test_the_revisions_build_what_the_models_describe(schema_url):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(schema_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
