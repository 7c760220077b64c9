"""The log store's write side: log lines go through the shared write path into ``log_lines``."""

from __future__ import annotations

from portal.db.writer import WritePath
from portal.settings import Settings

COLUMNS = ("time", "host", "component", "level", "message", "labels", "source", "seq")


def log_writer(cfg: Settings, name: str = "log_lines", durable: bool = True) -> WritePath:
    """A write path for rows ``(time, host, component, level, message, labels, source, seq)``.

    ``source``/``seq`` are the idempotency key (file identity and byte offset for the shipper,
    handler instance and counter for the logging handler): replays never duplicate a line.
    """
    return WritePath.from_settings(cfg, "log_lines", COLUMNS, name=name, durable=durable)
