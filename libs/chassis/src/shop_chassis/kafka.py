"""The Faust app of a service: broker, explicit topics, and the services it hosts.

Topics are declared by the code with an explicit partition count and replication factor
(the broker's auto-creation would pick its own defaults), before the consumer subscribes.
The app starts its other hosted services (database, outbox relay, lag monitor, then the gRPC
server) after its producer and consumer. On stop, the gRPC server stops first (it finishes
in-flight calls); then Faust stops fetching and lets the agents finish the event in hand;
then the other hosted services, and Faust's consumer and producer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from faust.sensors import Sensor
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer
from faust.types import AppT, ProducerT, TopicT
from mode import Service, ServiceT
from prometheus_client import Counter, Gauge

from shop_chassis.settings import ServiceSettings

log = structlog.get_logger(__name__)


# The broker takes records up to its message.max.bytes (Kafka's default: 1,048,588 bytes per
# record batch). A dead letter is such a record plus its dlq-* headers, so a dead-letter topic
# takes up to this much, and so may the producer send: an event as large as the broker allows
# must not be too large to dead-letter (its agent would retry the send forever).
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024


class TopicDeclarations(Service):
    """Creates the service's topics, if missing, before its consumer subscribes to them; a
    topic declared with settings (`config`) gets them even if it exists already."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[TopicT], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)

    async def on_start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    topic.get_topic_name(),
                    num_partitions=topic.partitions,
                    replication_factor=topic.replicas,
                    topic_configs=_configs(topic),
                )
                for topic in self.topics
                if topic.get_topic_name() not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                for name, code, message in _topic_errors(response):
                    if code != TopicAlreadyExistsError.errno:  # another worker was first
                        raise RuntimeError(f"creating Kafka topic {name} failed: {message}")
            configured = [
                ConfigResource(ConfigResourceType.TOPIC, topic.get_topic_name(), _configs(topic))
                for topic in self.topics
                if topic.get_topic_name() in existing and _configs(topic)
            ]
            if configured:  # created by an older version, without today's settings
                for response in await admin.alter_configs(configured):
                    for code, message, _, name in response.resources:
                        if code != 0:
                            raise RuntimeError(f"configuring Kafka topic {name} failed: {message}")
        finally:
            await admin.close()
        log.info("kafka_topics_ready", created=[t.name for t in missing])


def _configs(topic: TopicT) -> dict[str, str]:
    return {key: str(value) for key, value in (topic.config or {}).items()}


def _topic_errors(response: Any) -> list[tuple[str, int, str]]:
    return [
        (error[0], error[1], error[2] if len(error) > 2 else "")
        for error in response.topic_errors
        if error[1] != 0
    ]


consumer_lag = Gauge(
    "shop_kafka_consumer_lag",
    "Messages in a partition not yet committed by this service's consumer group",
    ["topic", "partition"],
)


rebalances_total = Counter(
    "shop_kafka_rebalances_total", "Consumer group rebalances this worker took part in"
)


class RebalanceCounter(Sensor):
    """Counts rebalances (Faust's own gauge only says whether one is in progress)."""

    def on_rebalance_start(self, app: AppT) -> dict[str, Any]:
        rebalances_total.inc()
        state: dict[str, Any] = super().on_rebalance_start(app)
        return state


class ConsumerLagMonitor(Service):
    """The consumer group's lag on this worker's partitions, from the consumer the service
    already has (no extra client): each partition's high watermark, which every fetch
    response carries, minus the offset this worker last committed there (Faust's monitor
    keeps those).

    A partition counts once this worker has committed on it; the consumer commits every few
    seconds while it makes progress, and a stalled one keeps its last value and grows.
    """

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    @Service.timer(5.0)
    async def _measure(self) -> None:
        consumer = self.app.consumer
        committed = self.app.monitor.tp_committed_offsets
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if tp in committed and highwater is not None:
                lag = max(highwater - committed[tp], 0)
                consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)


class IdempotentProducer(AiokafkaProducer):
    """Faust's producer with Kafka's idempotent protocol on: a retried send can neither
    duplicate nor reorder records within a partition, which the outbox's per-key order
    relies on. Faust enables it only for transactions."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class ShopApp(faust.App):
    """A faust.App that starts `early` services before its consumer and producer, and
    `hosted` services after them; on stop, `stop_first` services stop before Faust does
    anything (the gRPC server: stop accepting, finish in-flight calls, then stop Kafka)."""

    early: list[ServiceT]
    hosted: list[ServiceT]
    stop_first: list[ServiceT]
    # topic -> the event types its agent handles (`shop_chassis.events.subscribe` fills it)
    handled_event_types: dict[str, frozenset[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early = []
        self.hosted = []
        self.stop_first = []
        self.handled_event_types = {}

    def host(
        self, service: ServiceT, *, before_kafka_clients: bool = False, stop_first: bool = False
    ) -> None:
        (self.early if before_kafka_clients else self.hosted).append(service)
        if stop_first:
            self.stop_first.append(service)

    def _new_producer(self) -> ProducerT:
        # The process's one producer: the outbox relay and the dead-letter path share it.
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        yield from self.early
        yield from super().on_init_dependencies()
        yield from self.hosted

    async def on_stop(self) -> None:
        for service in self.stop_first:
            await service.stop()
        await super().on_stop()


def create_app(settings: ServiceSettings) -> ShopApp:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ShopApp(
        settings.kafka_consumer_group,  # the app id is the consumer group: one per service
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        web_enabled=False,
        producer_acks=-1,
        # A send not acknowledged in 10 s fails (Faust's default waits 20 minutes), so the
        # outbox relay notices an outage and retries from its table.
        producer_request_timeout=10.0,
        producer_linger=0.002,
        producer_max_request_size=DEAD_LETTER_MAX_BYTES,
        consumer_auto_offset_reset="earliest",
        # Local, single-broker timings: joins and rebalances in seconds, not half a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        worker_redirect_stdouts=False,
    )


def declare_topic(app: faust.App, settings: ServiceSettings, name: str, **kwargs: Any) -> TopicT:
    """A topic with the configured partitions and replication, raw bytes in and out."""
    return app.topic(
        name,
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        **kwargs,
    )


ORDERS_TOPIC = "shop.orders.v1"  # key = order_id: OrderConfirmed, OrderCancelled
INVENTORY_TOPIC = "shop.inventory.v1"  # StockLow (key = sku), StockReserved/Released (order_id)
