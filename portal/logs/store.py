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
    return WritePath(
        cfg.database_url,
        "log_lines",
        COLUMNS,
        spool_dir=cfg.spool_dir,
        name=name,
        batch_rows=cfg.write_batch_rows,
        flush_seconds=cfg.write_flush_seconds,
        queue_rows=cfg.write_queue_rows,
        durable=durable,
    )
