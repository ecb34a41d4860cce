"""Schema migrations (Alembic) run from code: ``rotator db upgrade`` and the start-up check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

import rotator
from rotator.audit.records import SCHEMA_REVISION
from rotator.audit.tables import declare_partial_indexes
from rotator.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


def migrations_dir() -> Path:
    """Where the migration scripts are: inside an installed wheel, or the source tree."""
    package = Path(rotator.__file__).parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("rotator's migrations are missing from this installation")


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    declare_partial_indexes()  # for Alembic's comparisons (migrations/env.py's metadata)
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str:
    """The newest revision among the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


_CURRENT = text("SELECT version_num FROM alembic_version")


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for a database no migration has run in."""
    with engine.connect() as connection:
        # Every command checks this as it starts: one query for the usual migrated database,
        # the catalogue consulted only when it fails.
        try:
            version = connection.execute(_CURRENT).scalar()
        except DBAPIError:
            connection.rollback()
            if not inspect(connection).has_table("alembic_version"):
                return None
            raise
    return str(version) if version else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, command.downgrade, revision)


def lost_by_downgrade(engine: Engine, revision: str) -> list[str]:
    """What going down to ``revision`` deletes: each reverted migration's ``downgrade_destroys``.

    A migration script declares it as a module attribute, so the script that
    drops a table is also the one that says so.
    """
    from alembic.script import ScriptDirectory

    current = current_revision(engine)
    if current is None:
        return []
    scripts = ScriptDirectory.from_config(_alembic_config())
    reverted = scripts.iterate_revisions(current, revision)
    return [
        f"{script.revision}: {script.module.downgrade_destroys}"
        for script in reverted
        if getattr(script.module, "downgrade_destroys", None)
    ]


def _run(engine: Engine, action: Callable[[AlembicConfig, str], None], revision: str) -> None:
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        action(config, revision)


def require_current_schema(engine: Engine) -> None:
    """Raise ``SchemaOutOfDate`` unless the database is at this rotator's head revision."""
    current, head = current_revision(engine), SCHEMA_REVISION
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at revision {current or 'none (empty database)'}, this "
            f"rotator needs {head}: run 'rotator db upgrade' first"
        )
