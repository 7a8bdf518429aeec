"""Load the seed catalog (inventory/catalog.toml) on first start.

Revision ID: 0002
Revises: 0001
"""

import tomllib
from importlib.resources import files

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

products = sa.table(
    "products",
    sa.column("sku", sa.String),
    sa.column("name", sa.String),
    sa.column("price_cents", sa.Integer),
    sa.column("available", sa.Integer),
    sa.column("reserved", sa.Integer),
)


def upgrade() -> None:
    catalog = tomllib.loads(files("inventory").joinpath("catalog.toml").read_text())
    op.bulk_insert(
        products,
        [
            {
                "sku": p["sku"],
                "name": p["name"],
                "price_cents": p["price_cents"],
                "available": p["stock"],
                "reserved": 0,
            }
            for p in catalog["products"]
        ],
    )


def downgrade() -> None:
    op.execute(products.delete())
