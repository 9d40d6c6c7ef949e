"""Alembic environment: run migrations against the app's own database connection."""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    # Only when nobody configured logging: the app's own log format wins.
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("alembic.env")

database = current_app.extensions["migrate"].db
metadata = database.metadata
config.set_main_option(
    "sqlalchemy.url",
    database.engine.url.render_as_string(hide_password=False).replace("%", "%%"),
)


def run_offline() -> None:
    """Write the SQL of the migrations instead of running it (``--sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on a live connection.

    Flask-Migrate's defaults apply (``render_as_batch`` so SQLite can alter tables by
    copying them, ``compare_type``); autogenerate skips empty revisions so that
    ``db migrate`` never writes noise.
    """

    def skip_empty(context_, revision, directives):
        if getattr(context_.config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                log.info("No changes in schema detected.")

    def plain_types(type_, object_, autogen_context):
        # Revisions must not import the app: write our timestamp type as its impl.
        if type_ == "type" and type(object_).__name__ == "UTCDateTime":
            return "sa.DateTime()"
        return False

    options = dict(current_app.extensions["migrate"].configure_args)
    options.setdefault("process_revision_directives", skip_empty)
    options.setdefault("render_item", plain_types)
    with database.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign
            # keys on (database.py turns them on), dropping ``readers`` would cascade to
            # every consent and sign-in. The pragma only takes effect outside a
            # transaction, and what the copy breaks is checked before the end.
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke foreign keys: {broken[:10]}")
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")
            connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
