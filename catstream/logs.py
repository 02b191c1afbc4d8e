"""structlog configuration: JSON when not on a terminal, readable on one.

Use ``get_logger(__name__).bind(product_id=..., topic=..., partition=..., offset=...)``
so every line about an event carries where it came from.

Every line, structlog's and the standard library's (third-party clients), passes
``catstream.redaction`` last: no URL credential or configured secret is written,
also not inside a rendered traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from catstream.redaction import redact, redact_value

_configured = False


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask URL credentials, secret values and secret-named keys."""
    return {key: redact_value(value, key) for key, value in event_dict.items()}


class RedactingFilter(logging.Filter):
    """The same for standard-library records (the message is rendered, then redacted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text instead of rendering the traceback again.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now*: a logger bound at import time must not
    keep a stream that was replaced since (pytest swaps it per test and closes the old)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging once per process."""
    global _configured
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # Third-party chatter (faust, aiokafka, urllib3) is useful only when debugging.
    for noisy in ("aiokafka", "faust", "mode", "urllib3", "elastic_transport", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    _configured = True


def get_logger(name: str | None = None, **context: Any) -> Any:
    """A structlog logger bound to ``context``."""
    if not _configured:
        configure_logging()
    # Lazy: the proxy binds on each use, so a logger made at import time follows later
    # configuration (and structlog.testing.capture_logs).
    return structlog.get_logger(name, **context)
