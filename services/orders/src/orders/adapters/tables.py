"""The orders database schema (SQLAlchemy Core); migrations/ creates it."""

from shop_chassis.outbox import outbox_table
from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    # seq orders "newest first" listings and keys their page tokens.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(36), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("cancel_reason", String(500), nullable=False, default=""),
    Column("request_id", String(36), nullable=True, unique=True),
    Column("request_fingerprint", String(64), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    # A customer's orders, newest first (ListOrders).
    Index("ix_orders_customer_id", "customer_id", "seq"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", ForeignKey("orders.order_id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("sku", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
)

outbox = outbox_table(metadata)
