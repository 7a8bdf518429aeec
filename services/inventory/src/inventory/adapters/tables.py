"""The inventory database schema (SQLAlchemy Core); migrations/ creates it."""

from shop_chassis.events import processed_events_table
from shop_chassis.outbox import outbox_table
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
    # The last line of defence under the conditional updates: stock never goes negative.
    CheckConstraint("available >= 0", name="ck_products_available_not_negative"),
    CheckConstraint("reserved >= 0", name="ck_products_reserved_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    # The latest ReserveStock attempt for the order: a release naming an older one is void.
    Column("last_attempt_id", String(36), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column("order_id", ForeignKey("reservations.order_id"), primary_key=True),
    Column("sku", ForeignKey("products.sku"), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
)

outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
