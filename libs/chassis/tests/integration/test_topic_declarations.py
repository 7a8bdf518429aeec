"""Topics declared with settings get them on a real broker, whether the service creates the
topic or finds it made by an older version without them (dead-letter topics' size limit)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faust.types import TopicT
from shop_chassis.kafka import DEAD_LETTER_MAX_BYTES, TopicDeclarations
from shop_devstack.stack import Stack

pytestmark = pytest.mark.integration


@dataclass
class Declared:
    """What TopicDeclarations reads of a Faust topic."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    partitions: int = 1
    replicas: int = 1

    def get_topic_name(self) -> str:
        return self.name


async def max_message_bytes(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
        )
    finally:
        await admin.close()
    ((*_, entries),) = response.resources
    return str(dict((name, value) for name, value, *_ in entries)["max.message.bytes"])


async def declare(bootstrap: str, *topics: Declared) -> None:
    declarations = TopicDeclarations(bootstrap, cast(list[TopicT], list(topics)))
    await declarations.on_start()


async def test_a_new_dead_letter_topic_takes_records_up_to_its_limit(stack: Stack) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}.dlq"

    await declare(
        stack.kafka_bootstrap, Declared(name, {"max.message.bytes": DEAD_LETTER_MAX_BYTES})
    )

    assert await max_message_bytes(stack.kafka_bootstrap, name) == str(DEAD_LETTER_MAX_BYTES)


async def test_an_existing_topic_without_the_setting_gets_it(stack: Stack) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    assert await max_message_bytes(stack.kafka_bootstrap, name) != str(DEAD_LETTER_MAX_BYTES)

    await declare(
        stack.kafka_bootstrap, Declared(name, {"max.message.bytes": DEAD_LETTER_MAX_BYTES})
    )

    assert await max_message_bytes(stack.kafka_bootstrap, name) == str(DEAD_LETTER_MAX_BYTES)
