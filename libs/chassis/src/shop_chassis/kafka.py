"""The Faust app of a service: broker, explicit topics, and the services it hosts.

Topics are declared by the code with an explicit partition count and replication factor
(the broker's auto-creation would pick its own defaults), before the consumer subscribes.
The app starts its other hosted services (database, outbox relay, lag monitor, then the gRPC
server) after its producer and consumer. On stop, the gRPC server stops first (it finishes
in-flight calls); then Faust stops fetching and lets the agents finish the event in hand;
then the other hosted services, and Faust's consumer and producer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import faust
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from faust.sensors import Sensor
from faust.transport.drivers.aiokafka import Consumer as AiokafkaConsumer
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer
from faust.types import TP, AppT, ConsumerT, Message, ProducerT, TopicT
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


class OffsetSafeConsumer(AiokafkaConsumer):
    """Faust's consumer, corrected so that it never commits past an offset it did not process
    and never drops a record it has not processed. Two upstream bugs, which together lost one
    event in a chaos run, at a rebalance:

    - https://github.com/faust-streaming/faust/issues/606: `_new_offset` returns None (commit
      nothing) only if `min(acked) - committed > 1`; but the committed offset is the next one
      to read, so acked [11, 12] over committed 10 commits 13, past 10, never processed.
    - https://github.com/faust-streaming/faust/issues/221: a batch fetched before the seek to
      the committed offsets that ends a rebalance is delivered after it; its first record
      (above the committed offset) moves the read offset past the records fetched again from
      the committed offset, which `_drain_messages` then drops as already read. Here a batch
      whose fetch or delivery overlapped a seek is not delivered (any further): the consumer
      seeks to the committed offsets again and fetches afresh, so every record after the seek
      comes from the position it set, in order. Seeking back only re-delivers records, which
      the consumers deduplicate by event id (`shop_chassis.events.first_delivery`).

    The private attributes used (`_acked`, `_gap`, `_committed_offset`, `_new_offset`,
    `_getmany`) are those of faust-streaming 0.15.3 (pinned in uv.lock): check them when
    upgrading.
    """

    _seeks = 0  # seeks begun or ended so far
    _seeking = 0  # seeks in progress
    _fetched_at: int | None = None  # `_seeks` when the batch in hand was fetched (None: in one)

    async def perform_seek(self) -> None:
        self._seeks += 1
        self._seeking += 1
        try:
            await super().perform_seek()
        finally:
            self._seeking -= 1
            self._seeks += 1

    # (the `timeout` parameters are Faust's signatures)
    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109
    ) -> Any:
        self._fetched_at = None if self._seeking else self._seeks
        return await super()._getmany(active_partitions, timeout)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109
        async for tp, message in super().getmany(timeout):
            if self._seeks != self._fetched_at:  # a seek overlapped the fetch or delivery
                break
            yield tp, message
        else:
            return
        # The batch was fetched before the seek, or after it, and then the fetcher is past
        # the records left undelivered: fetch again from the committed offsets.
        log.warning("kafka_batch_across_a_seek_dropped", topic=tp.topic, offset=message.offset)
        if self.flow_active:
            await self.perform_seek()

    def _new_offset(self, tp: TP) -> int | None:
        # Faust's own check (`min(acked) - committed > 1`) misses a head gap of one offset, and
        # is skipped for a committed offset of 0: the first offset neither acked nor in a known
        # gap (offsets that never come: Faust folds them into `acked` in `_new_offset`) bounds
        # the commit, and the committed offset is the next one to read.
        committed = self._committed_offset[tp]
        done = [*self._acked[tp], *(gap.begin for gap in self._gap[tp])]
        if done and committed is not None and min(done) > committed:
            return None
        offset: int | None = super()._new_offset(tp)
        return offset


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

    def _new_consumer(self) -> ConsumerT:
        # Faust's App._new_consumer (transport.create_consumer), with the corrected consumer.
        return OffsetSafeConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )

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
