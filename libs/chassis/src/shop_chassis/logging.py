"""structlog for our code and, through the stdlib bridge, for Faust, aiokafka and grpc.

Lines are JSON when stderr is not a terminal (or LOG_FORMAT=json) and readable console
output on a terminal. Every line carries the service name; lines written while a span is
current carry its trace_id and span_id.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger


def _add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _shared_processors(service: str) -> list[Processor]:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
        _add_trace_context,
    ]


def logging_config(service: str, level: str, log_format: str) -> dict[str, Any]:
    """A logging.config.dictConfig that renders stdlib records with structlog.

    Returned as well as applied, because the Faust worker (re)configures logging when it
    starts and must be handed this config instead of building its own.
    """
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": [*_shared_processors(service), structlog.stdlib.ExtraAdder()],
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            }
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "structlog",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        # Per-message chatter from the Kafka client is noise at INFO.
        "loggers": {"aiokafka": {"level": "WARNING" if level in {"DEBUG", "INFO"} else level}},
    }


def configure_logging(service: str, level: str, log_format: str) -> dict[str, Any]:
    """Configure structlog and stdlib logging; return the dictConfig for the Faust worker."""
    config = logging_config(service, level, log_format)
    logging.config.dictConfig(config)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(service),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return config
