"""Diagnostic logging for the daemon: today's plain lines or one JSON object per line
(``[logging] format = "json"``), and the scheduler's noise kept out.

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (a stable
name: the one a call site gives with ``extra={"event": ...}``, else ``<logger>.<level>``),
``message`` (the formatted text, which by the project's rule holds codes, ids and parties,
never a payload or a personal value) and, when the call site gives them, ``message_id``,
``partner``, ``state``, ``error_code``, ``duration_ms``. A traceback is reduced to the
exception's type (its text may quote data).

APScheduler warns "skipped: maximum number of running instances reached" each time a
periodic job is still running when its next turn comes. Here that is normal (a slow pull
or a long scan simply skips a turn: ``max_instances=1`` on purpose), so those records
are counted (:data:`SKIPPED`) and dropped instead of filling the log under load.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from gateway.node.monitor_config import LoggingConfig

__all__ = ["FIELDS", "SCHEDULER_LOGGER", "SKIPPED", "JsonFormatter", "SkippedRuns",
           "configure", "scheduler_logger"]

#: The structured fields a call site may pass with ``extra=``.
FIELDS = ("message_id", "partner", "state", "error_code", "duration_ms", "direction")
SCHEDULER_LOGGER = "gateway.node.scheduler"
#: where APScheduler's executors log each job run
EXECUTOR_LOGGER = "apscheduler.executors"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event if isinstance(event, str) else
            f"{record.name}.{record.levelname.lower()}",
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


class SkippedRuns(logging.Filter):
    """Drops APScheduler's "maximum number of running instances reached" warning and
    counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" in str(record.msg):
            self.count += 1
            return False
        return True


SKIPPED = SkippedRuns()


def scheduler_logger() -> logging.Logger:
    """The logger handed to APScheduler (its own messages, with the skip filter)."""
    logger = logging.getLogger(SCHEDULER_LOGGER)
    if SKIPPED not in logger.filters:
        logger.addFilter(SKIPPED)
    return logger


def configure(config: LoggingConfig, *, verbose: int = 0) -> None:
    """Set the root handler's format (text or JSON) and level for ``gateway run``.
    ``-v`` on the command line lowers the level further."""
    level = getattr(logging, config.level.upper())
    if verbose:
        level = min(level, logging.WARNING - 10 * min(verbose, 2))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter: logging.Formatter = (JsonFormatter() if config.format == "json"
                                    else logging.Formatter(TEXT_FORMAT))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level)
    # APScheduler's executor logs two INFO lines for every job run ("Running job",
    # "executed successfully"), and the outbox scan runs several times a second: at
    # INFO they buried the gateway's own lines (and cost about 3 % of a busy receiving
    # daemon's interpreter time). They are kept at DEBUG (-vv, or level = "debug").
    logging.getLogger(EXECUTOR_LOGGER).setLevel(
        logging.NOTSET if level <= logging.DEBUG else logging.WARNING)
