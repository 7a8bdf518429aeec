"""The notifier database schema (SQLAlchemy Core); migrations/ creates it."""

from shop_chassis.events import processed_events_table
from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(36), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("source_event_id", String(36), nullable=False, unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False),
    # A customer's or an order's notifications, newest first (ListNotifications).
    Index("ix_notifications_customer", "customer_id", "seq"),
    Index("ix_notifications_order", "order_id", "seq"),
)

processed_events = processed_events_table(metadata)
