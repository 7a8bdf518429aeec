from notifier.adapters.tables import metadata
from shop_chassis.db import run_migrations

run_migrations(metadata)
