"""The pruner against real SQLite and PostgreSQL: what it deletes, what it never deletes, how
small its units of work stay, and that under steady writes the tables stay bounded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from shop_chassis.db import Database, open_database
from shop_chassis.events import first_delivery, processed_events_table
from shop_chassis.outbox import now, outbox_table
from shop_chassis.retention import Pruner
from shop_chassis.settings import Retention
from sqlalchemy import Delete, MetaData, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

metadata = MetaData()
outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)

DAY = timedelta(days=1)


def retention(
    *, outbox_for: timedelta = 7 * DAY, processed_for: timedelta = 14 * DAY, interval: float = 300
) -> Retention:
    return Retention(
        sent_outbox_rows=outbox_for, processed_events=processed_for, prune_interval_seconds=interval
    )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    await database.write(metadata.create_all, name="schema")
    yield database
    await database.dispose()


def outbox_rows(count: int, *, created_at: datetime, sent_at: datetime | None) -> Any:
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "topic": "t",
            "key": "k",
            "event_type": "OrderCancelled",
            "payload": b"x" * 200,
            "trace_context": {},
            "created_at": created_at,
            "sent_at": sent_at,
        }
        for _ in range(count)
    ]
    return lambda c: c.execute(outbox.insert(), rows)


def processed(event_ids: list[str], *, at: datetime) -> Any:
    rows = [{"event_id": event_id, "processed_at": at} for event_id in event_ids]
    return lambda c: c.execute(processed_events.insert(), rows)


async def outbox_contents(database: Database) -> list[tuple[datetime, datetime | None]]:
    query = select(outbox.c.created_at, outbox.c.sent_at).order_by(outbox.c.id)
    return [
        (utc(r.created_at), r.sent_at and utc(r.sent_at))
        for r in await database.read(lambda c: c.execute(query).all())
    ]


async def count(database: Database, query: Any) -> int:
    return int(await database.read(lambda c: c.execute(query).scalar_one()))


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite keeps no zone


async def test_sent_outbox_rows_are_pruned_once_older_than_their_retention(
    database: Database,
) -> None:
    old, recent = now() - 8 * DAY, now() - timedelta(hours=1)
    await database.write(outbox_rows(2, created_at=old, sent_at=old), name="old")
    await database.write(outbox_rows(1, created_at=recent, sent_at=recent), name="recent")

    pruned = await Pruner(database, retention(outbox_for=7 * DAY), outbox=outbox).prune()

    assert pruned == {"outbox": 2}
    assert await outbox_contents(database) == [(recent, recent)]


async def test_an_unsent_outbox_row_is_never_pruned_however_old(database: Database) -> None:
    long_ago = now() - 365 * DAY
    await database.write(outbox_rows(1, created_at=long_ago, sent_at=None), name="unsent")

    pruned = await Pruner(database, retention(outbox_for=timedelta(0)), outbox=outbox).prune()

    assert pruned == {"outbox": 0}
    assert await outbox_contents(database) == [(long_ago, None)]


async def test_old_dedupe_records_are_pruned_and_recent_ones_still_deduplicate(
    database: Database,
) -> None:
    old_event, recent_event = str(uuid.uuid4()), str(uuid.uuid4())
    await database.write(processed([old_event], at=now() - 15 * DAY), name="old")
    await database.write(processed([recent_event], at=now() - DAY), name="recent")
    pruner = Pruner(database, retention(processed_for=14 * DAY), processed_events=processed_events)

    assert await pruner.prune() == {"processed_events": 1}

    redelivered = await database.write(
        lambda c: first_delivery(c, processed_events, recent_event), name="consume"
    )
    assert redelivered is False
    # Past its retention an event id is forgotten: a delivery that late would count as new.
    forgotten = await database.write(
        lambda c: first_delivery(c, processed_events, old_event), name="consume"
    )
    assert forgotten is True


async def test_a_large_backlog_is_pruned_in_units_of_at_most_one_batch(
    database: Database,
) -> None:
    old = now() - 30 * DAY
    await database.write(outbox_rows(1200, created_at=old, sent_at=old), name="backlog")
    pruner = Pruner(database, retention(), outbox=outbox, batch_size=500)

    with database.counting_statements() as counted:
        pruned = await pruner.prune()

    assert pruned == {"outbox": 1200}
    assert (counted.writes, counted.count) == (3, 3)  # 500, 500, 200: one statement each
    assert await outbox_contents(database) == []


async def test_pruned_rows_are_counted_per_table(database: Database) -> None:
    old = now() - 30 * DAY
    await database.write(outbox_rows(3, created_at=old, sent_at=old), name="old")
    await database.write(processed(["e-1", "e-2"], at=old), name="old")
    before = {table: pruned_total(table) for table in ("outbox", "processed_events")}

    await Pruner(database, retention(), outbox=outbox, processed_events=processed_events).prune()

    assert pruned_total("outbox") - before["outbox"] == 3
    assert pruned_total("processed_events") - before["processed_events"] == 2


def pruned_total(table: str) -> float:
    return REGISTRY.get_sample_value("shop_pruned_rows_total", {"table": table}) or 0.0


async def test_the_prune_finds_the_oldest_rows_through_an_index(database: Database) -> None:
    # With statistics, as a live database has them. (Which way PostgreSQL then deletes the
    # rows found is its cost-based choice: a table this small it may scan, a large one it
    # reaches through the primary key.)
    old, recent = now() - 30 * DAY, now()
    await database.write(outbox_rows(2000, created_at=recent, sent_at=recent), name="recent")
    await database.write(outbox_rows(100, created_at=old, sent_at=old), name="old")
    await database.write(processed([f"r-{i}" for i in range(2000)], at=recent), name="recent")
    await database.write(processed([f"o-{i}" for i in range(100)], at=old), name="old")
    await database.write(lambda c: c.execute(text("ANALYZE")), name="statistics")
    pruner = Pruner(database, retention(), outbox=outbox, processed_events=processed_events)
    parameters = {"cutoff": now() - DAY, "limit": pruner.batch_size}

    plans = {
        each.table: await database.write(
            lambda c, each=each: query_plan(c, each.delete_oldest, parameters), name="explain"
        )
        for each in pruner.expiries
    }

    assert "ix_outbox_unsent" in plans["outbox"], plans["outbox"]
    assert "ix_processed_events_processed_at" in plans["processed_events"], plans
    if database.system == "sqlite":
        assert not any(
            line.startswith("SCAN") for plan in plans.values() for line in plan.split("\n")
        )


def query_plan(connection: Connection, statement: Delete, parameters: dict[str, Any]) -> str:
    """The database's plan for `statement` with `parameters`, one line per step."""
    if connection.dialect.name == "sqlite":
        explain, dialect = "EXPLAIN QUERY PLAN ", sqlite.dialect(paramstyle="named")
    else:
        explain, dialect = "EXPLAIN ", postgresql.dialect(paramstyle="named")
    compiled = statement.compile(dialect=dialect)
    query = text(explain + compiled.string).bindparams(
        *(bindparam(name, type_=bound.type) for bound, name in compiled.bind_names.items())
    )
    rows = connection.execute(query, compiled.construct_params(parameters))
    return "\n".join(str(row[-1]) for row in rows)


async def test_under_steady_writes_the_tables_stay_bounded(database: Database) -> None:
    keep_for, interval, seconds = timedelta(seconds=0.5), 0.1, 2.5
    pruner = Pruner(
        database,
        retention(outbox_for=keep_for, processed_for=keep_for, interval=interval),
        outbox=outbox,
        processed_events=processed_events,
        batch_size=100,
    )
    sent = select(func.count(), func.min(outbox.c.sent_at)).where(outbox.c.sent_at.isnot(None))
    dedupe = select(func.count(), func.min(processed_events.c.processed_at))
    unsent = select(func.count()).where(outbox.c.sent_at.is_(None))
    written = staged_unsent = 0
    largest = 0
    oldest_age = timedelta(0)

    await pruner.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            moment = now()
            await database.write(outbox_rows(20, created_at=moment, sent_at=moment), name="sent")
            await database.write(outbox_rows(1, created_at=moment, sent_at=None), name="unsent")
            await database.write(
                processed([str(uuid.uuid4()) for _ in range(20)], at=moment), name="consume"
            )
            written += 20
            staged_unsent += 1
            for query in (sent, dedupe):
                rows, oldest = await database.read(lambda c, q=query: c.execute(q).one())
                largest = max(largest, rows)
                if oldest is not None:
                    oldest_age = max(oldest_age, now() - utc(oldest))
            await asyncio.sleep(0.01)
    finally:
        await pruner.stop()

    assert written >= 500, "too few rows written for the check to mean anything"
    # Nothing outlives its retention by more than a round and some scheduling slack, so the
    # tables hold about a retention's worth of rows however long the writes go on.
    assert oldest_age < keep_for + timedelta(seconds=interval + 1.0)
    assert largest < written / 2
    assert await count(database, unsent) == staged_unsent
