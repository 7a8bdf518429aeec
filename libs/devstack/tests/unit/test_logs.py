"""Reading, merging and choosing the lines of the stack's log files (`make logs`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from shop_devstack.logs import LogFolder, LogLine, Selection, parse, readable

TRACE = "0a63f8cb45fe8df893411cdc1367847e"
OTHER_TRACE = "6cda33a2985b76512d1db3c675c2ca5f"
ORDER = "a52a3f20-ef7d-426d-be45-09ae740e2fac"


def service_line(event: str, at: str, trace_id: str = "", **fields: object) -> str:
    line = {**fields, "event": event, "level": "info", "timestamp": at, "service": "orders"}
    if trace_id:
        line["trace_id"] = trace_id
    return json.dumps(line)


def test_a_service_line_keeps_its_event_fields_and_trace_id() -> None:
    text = service_line("order_confirmed", "2026-11-30T21:23:35.639278Z", TRACE, order_id=ORDER)

    line = parse("orders-2", text, None)

    assert line.process == "orders-2"
    assert line.time == datetime(2026, 11, 30, 21, 23, 35, 639278, UTC)
    assert (line.level, line.message, line.trace_id) == ("info", "order_confirmed", TRACE)
    assert line.fields["order_id"] == ORDER


def test_kafka_jaeger_prometheus_and_postgres_lines_are_read_for_their_level() -> None:
    lines = {
        "kafka": "[2026-11-30 21:22:06,224] WARN [QuorumController id=1] activation (org.x)",
        "jaeger": "2026-11-30T21:22:12.094Z\terror\tui/assets.go:27\tno assets\t{}",
        "prometheus": 'ts=2026-11-30T21:22:12.094Z caller=main.go:1 level=warn msg="slow"',
        "postgres": "2026-11-30 21:22:06.224 UTC [123] FATAL:  the database system is down",
    }

    levels = {name: parse(name, text, None).level for name, text in lines.items()}

    assert levels == {
        "kafka": "warning",
        "jaeger": "error",
        "prometheus": "warning",
        "postgres": "critical",
    }
    assert parse("kafka", lines["kafka"], None).message.startswith("[QuorumController id=1]")
    assert parse("postgres", lines["postgres"], None).time == datetime(
        2026, 11, 30, 21, 22, 6, 224000, UTC
    )


def test_a_java_stack_trace_line_belongs_to_the_line_before_it() -> None:
    error = parse("kafka", "[2026-11-30 21:22:06,224] ERROR broker failed (kafka.Kafka)", None)

    continued = parse("kafka", "\tat kafka.Kafka.main(Kafka.scala:1)", error)

    assert (continued.time, continued.level) == (error.time, "error")
    assert continued.message == "\tat kafka.Kafka.main(Kafka.scala:1)"


def line(process: str, message: str, trace_id: str = "", **fields: object) -> LogLine:
    return LogLine(
        process,
        datetime(2026, 11, 30, tzinfo=UTC),
        str(fields.pop("level", "info")),
        message,
        {"event": message, **({"trace_id": trace_id} if trace_id else {}), **fields},
    )


def test_an_order_id_chooses_its_lines_and_every_line_of_their_traces() -> None:
    stored = line("notifier", "notification_stored", TRACE)  # no order id, before the others
    reserved = line("inventory", "stock_reserved", TRACE, order_id=ORDER)
    cancelled = line("orders", "order_cancelled", OTHER_TRACE, order_id=ORDER)
    elsewhere = line("orders", "order_confirmed", "f" * 32, order_id="another")
    kafka = LogLine("kafka", datetime(2026, 11, 30, tzinfo=UTC), "info", "rolled segment", {})

    chosen = Selection(id=ORDER).choose([stored, reserved, cancelled, elsewhere, kafka])

    assert chosen == [stored, reserved, cancelled]


def test_a_trace_id_chooses_the_lines_of_that_trace_only() -> None:
    mine, other = line("orders", "a", TRACE), line("orders", "b", OTHER_TRACE)

    assert Selection(id=TRACE).choose([mine, other]) == [mine]


def test_a_service_name_chooses_every_replica_of_it_and_nothing_else() -> None:
    lines = [line(name, "x") for name in ("orders", "orders-1", "orders-2", "orders-db", "kafka")]

    chosen = Selection(processes=("orders",)).choose(lines)

    assert [c.process for c in chosen] == ["orders", "orders-1", "orders-2"]
    assert [c.process for c in Selection(processes=("orders-2",)).choose(lines)] == ["orders-2"]


def test_a_level_chooses_that_level_and_the_ones_above() -> None:
    lines = [line("orders", level, level=level) for level in ("debug", "info", "warning", "error")]

    chosen = Selection(level="warning").choose(lines)

    assert [c.level for c in chosen] == ["warning", "error"]


def test_a_folder_is_read_merged_in_time_order_then_only_for_what_is_new(tmp_path: Path) -> None:
    (tmp_path / "orders.log").write_text(
        service_line("first", "2026-11-30T21:00:01Z")
        + "\n"
        + service_line("third", "2026-11-30T21:00:03Z")
        + "\n"
    )
    (tmp_path / "kafka.log").write_text("[2026-11-30 21:00:02,000] WARN second (x)\n")
    folder = LogFolder(tmp_path)

    first_read = [(line.process, line.message.split()[0]) for line in folder.read()]
    with (tmp_path / "orders.log").open("a") as log:
        log.write(service_line("fourth", "2026-11-30T21:00:04Z") + "\n")
        log.write('{"event": "half a li')  # the writer has not finished it yet

    assert first_read == [("orders", "first"), ("kafka", "second"), ("orders", "third")]
    assert [line.message for line in folder.read()] == ["fourth"]
    with (tmp_path / "orders.log").open("a") as log:
        log.write('ne", "level": "info", "timestamp": "2026-11-30T21:00:05Z"}\n')
    assert [line.message for line in folder.read()] == ["half a line"]


def test_a_log_emptied_and_written_again_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "orders.log"
    log.write_text(service_line("old run", "2026-11-30T21:00:01Z") + "\n" * 20)
    folder = LogFolder(tmp_path)
    folder.read()

    log.write_text(service_line("new run", "2026-11-30T22:00:01Z") + "\n")

    assert [line.message for line in folder.read()] == ["new run"]


def test_make_run_shows_a_service_line_readable_and_other_lines_as_they_are() -> None:
    text = service_line("order_confirmed", "2026-11-30T21:23:35.639278Z", TRACE, order_id=ORDER)
    kafka = "[2026-11-30 21:22:06,224] WARN [QuorumController id=1] activation (org.x)"

    shown = re.sub(r"\033\[[\d;]*m", "", readable(text))

    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d\.\d{{3}} +INFO  order_confirmed order_id={ORDER} trace_id={TRACE}", shown
    ), shown
    assert readable(kafka) == kafka
