import io
import json
import logging

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from shop_chassis.logging import configure_logging


@pytest.fixture
def captured() -> io.StringIO:
    configure_logging("orders", "INFO", "json")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_our_log_lines_are_json_with_service_level_and_logger(captured: io.StringIO) -> None:
    structlog.get_logger("orders.test").info("order_created", order_id="o-1")
    (line,) = lines(captured)
    assert line["event"] == "order_created"
    assert line["service"] == "orders"
    assert line["level"] == "info"
    assert line["logger"] == "orders.test"
    assert line["order_id"] == "o-1"
    assert "timestamp" in line
    assert "trace_id" not in line


def test_stdlib_records_from_libraries_keep_their_level(captured: io.StringIO) -> None:
    logging.getLogger("faust.worker").warning("rebalance %s", "started")
    (line,) = lines(captured)
    assert line == line | {
        "event": "rebalance started",
        "level": "warning",
        "logger": "faust.worker",
    }


def test_lines_inside_a_span_carry_its_trace_and_span_id(captured: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("handle") as span:
        structlog.get_logger("orders.test").info("inside")
        logging.getLogger("faust").info("inside too")
    context = span.get_span_context()
    assert len(lines(captured)) == 2
    for line in lines(captured):
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert line["span_id"] == format(context.span_id, "016x")


def test_filtered_levels_are_not_written(captured: io.StringIO) -> None:
    structlog.get_logger("orders.test").debug("noise")
    assert captured.getvalue() == ""
