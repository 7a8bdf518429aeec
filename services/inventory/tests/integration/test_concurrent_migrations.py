"""Replicas that start together (a Kubernetes Deployment's pods) migrate one PostgreSQL
database at the same time: each waits for the one before it, none fails."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import asyncpg
from inventory.bootstrap import MIGRATIONS

REPLICAS = 4


async def test_replicas_migrating_one_database_at_once_all_succeed_and_seed_it_once(
    postgres_port: int,
) -> None:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=postgres_port, user="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_port}/{name}"

    async def migrate() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shop_chassis.migrate",
            str(MIGRATIONS),
            env={**os.environ, "SHOP_MIGRATE_URL": url},
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        return process.returncode or 0, stderr.decode()[-2000:]

    results = await asyncio.gather(*(migrate() for _ in range(REPLICAS)))

    assert [code for code, _ in results] == [0] * REPLICAS, [err for _, err in results]
    database = await asyncpg.connect(
        host="127.0.0.1", port=postgres_port, user="postgres", database=name
    )
    try:
        skus = await database.fetchval("SELECT count(*) FROM products")
        duplicates = await database.fetchval("SELECT count(*) - count(DISTINCT sku) FROM products")
    finally:
        await database.close()
    assert skus > 0
    assert duplicates == 0
