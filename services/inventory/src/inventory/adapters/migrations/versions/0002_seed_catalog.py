"""The seed catalog, loaded on first start.

Frozen: the rows are written out here, so this revision inserts the same catalog into every
database whenever it runs. A change to the catalog is a new revision.

Revision ID: 0002
Revises: 0001
"""

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

# sku, name, price in cents, stock
CATALOG = [
    ("MUG-001", "Enamel camping mug", 1200, 100),
    ("TEE-BLK-M", "Black T-shirt, M", 2500, 50),
    ("SOCKS-3P", "Wool socks, 3 pairs", 1800, 200),
    ("BOOK-DDIA", "Designing Data-Intensive Applications", 4500, 20),
    ("LAMP-DESK", "Desk lamp", 3900, 8),
    ("LAST-ONE", "Signed poster (one left)", 9900, 1),
]


def upgrade() -> None:
    op.bulk_insert(
        products,
        [
            {"sku": sku, "name": name, "price_cents": price, "available": stock, "reserved": 0}
            for sku, name, price, stock in CATALOG
        ],
    )


def downgrade() -> None:
    op.execute(products.delete())
