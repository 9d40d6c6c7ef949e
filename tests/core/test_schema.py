"""The migrations and the models describe the same schema, on SQLite and PostgreSQL.

The service never calls ``create_all``: the tables come from ``migrations/``. A model
changed without a migration (or the other way round) would only show in production.
"""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from auth_service.extensions import db


def test_the_migrated_database_has_the_schema_the_models_describe(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)

    assert differences == []
