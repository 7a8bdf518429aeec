"""`python -m shop_chassis.migrate <migrations dir>`: Alembic's upgrade to head, with the
database URL in SHOP_MIGRATE_URL.

`Database.migrate` runs it as a process of its own at start-up, so Alembic and Mako (≈ 15 MB)
never stay loaded in the long-running service.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config


def upgrade(url: str, migrations: Path | str) -> None:
    """Bring the database at `url` to the newest revision in `migrations`, in this process."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    # Alembic's options go through ConfigParser's interpolation: a '%' (a percent-encoded
    # password, a path) must be doubled, or the upgrade fails printing the whole URL.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


if __name__ == "__main__":
    upgrade(os.environ["SHOP_MIGRATE_URL"], sys.argv[1])
