"""``portal logs``: every matching line, oldest first, as plain text or JSON lines.

Output is streamed (no cap, bounded memory) and written in large chunks; a closed pipe
(``| head``) ends the command quietly. ``--rejected`` prints the log lines the database refused
(set aside by the write path) with the error, instead of stored lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import click

from portal import settings
from portal.errors import PortalError
from portal.logs.filters import LogQuery, build_query
from portal.logs.format import FORMATS, Record, formatter
from portal.timeparse import stamp

CHUNK_LINES = 2000


def records(
    cfg: settings.Settings, q: LogQuery, source: str, follow: bool, tail: int | None = None
) -> Iterator[Record]:
    """Records from PostgreSQL (default) or Loki, in the same shape."""
    from portal.logs import query as lq

    if source == "loki":
        from portal.logs.loki import records as loki_records

        return loki_records(cfg.loki_url, q)
    if not follow:  # a host nobody ever logged from is a typo, not an empty answer
        lq.check_hosts(cfg.database_url, q.hosts)
    if tail is not None:
        if follow:
            return lq.tail_then_follow(cfg.database_url, q, tail)
        return iter(lq.tail(cfg.database_url, q, tail))
    if follow:
        return lq.follow(cfg.database_url, q)
    return lq.stream(cfg.database_url, q)


def write_lines(lines: Iterator[str], out: TextIO | None = None) -> int:
    """Write in chunks; returns the count. A closed pipe stops quietly, like ``cat``."""
    stream = out or sys.stdout
    count = 0
    chunk: list[str] = []
    try:
        for line in lines:
            chunk.append(line)
            if len(chunk) >= CHUNK_LINES:
                stream.write("".join(chunk))
                count += len(chunk)
                chunk.clear()
                if not stream.isatty():
                    continue
                stream.flush()
        stream.write("".join(chunk))
        stream.flush()
        return count + len(chunk)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return count


def write_following(lines: Iterator[str]) -> None:
    """Live tail: every line is flushed as soon as it is known."""
    try:
        for line in lines:
            sys.stdout.write(line)
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def rejected_lines(cfg: settings.Settings, fmt: str) -> Iterator[str]:
    """Set-aside log lines, one per line: the row as ``portal logs`` prints it, then the error.

    Text: ``<row in text format>\t<error>``; jsonl: the row's fields plus ``error``,
    ``rejected_at``, ``writer`` and ``file``. Rows of other tables are skipped.
    """
    from portal.db.writer import rejected_records
    from portal.logs.store import COLUMNS

    fmt_line = formatter(fmt)
    for rec in rejected_records(cfg.spool_dir):
        if rec["table"] not in (None, "log_lines"):
            continue
        columns = rec["columns"] or COLUMNS
        error = " ".join(str(rec.get("error", "")).split())
        for row in rec.get("rows") or []:
            fields: dict[str, Any] = dict(zip(columns, row, strict=False))
            if fmt == "jsonl":
                extra = {"rejected_at": rec["time"], "writer": rec["writer"], "file": rec["file"]}
                yield json.dumps({**fields, "error": error, **extra}, default=str) + "\n"
                continue
            yield fmt_line(_record(fields)).rstrip("\n") + f"\t{error}\n"


def _record(fields: dict[str, Any]) -> Record:
    """A set-aside row as a Record, whatever its values (they were refused for a reason)."""
    ts = str(fields.get("time"))
    try:
        when = datetime.fromisoformat(ts)
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        ts = stamp(when)
    except ValueError:
        pass
    seq = fields.get("seq")
    return Record(
        ts,
        str(fields.get("host", "")),
        str(fields.get("component", "")),
        str(fields.get("level", "")),
        str(fields.get("message", "")),
        str(fields.get("labels", "{}")),
        str(fields.get("source")),
        seq if isinstance(seq, int) else None,
    )


@click.command("logs")
@click.argument("selector", required=False)
@click.option("--host", "hosts", multiple=True, help="Host name or glob (cn0*); repeatable.")
@click.option("--component", "components", multiple=True, help="Component or glob; repeatable.")
@click.option("--level", help="Minimum level: DEBUG, INFO, WARNING, ERROR, CRITICAL.")
@click.option("--since", help="Start: 30m, 2h, 3d, 1w ago, or an ISO time.")
@click.option("--until", help="End (exclusive): same forms as --since.")
@click.option("--grep", help="Text the message must contain (a regular expression with --regex).")
@click.option(
    "--regex", is_flag=True, help="Read --grep as a regular expression (PostgreSQL syntax)."
)
@click.option("-i", "--ignore-case", is_flag=True, help="Make --grep case-insensitive.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (live tail).")
@click.option("--limit", type=int, default=None, help="At most this many lines (default: all).")
@click.option(
    "-n",
    "--tail",
    type=int,
    default=None,
    metavar="N",
    help="Only the newest N lines, printed oldest first (with -f: then new ones).",
)
@click.option(
    "--source",
    type=click.Choice(["db", "loki"]),
    default="db",
    show_default=True,
    help="Query the PostgreSQL log store or Loki (PORTAL_LOKI_URL).",
)
@click.option(
    "--rejected",
    is_flag=True,
    help="Print the lines the database refused (set aside by the write path), each with the "
    "error, instead of stored lines.",
)
def logs(
    selector: str | None,
    hosts: tuple[str, ...],
    components: tuple[str, ...],
    level: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    regex: bool,
    ignore_case: bool,
    fmt: str,
    follow: bool,
    limit: int | None,
    tail: int | None,
    source: str,
    rejected: bool,
) -> None:
    """Print stored log lines, oldest first: `<time> <host> <component> <LEVEL> <message>`.

    SELECTOR is optional LogQL-style, e.g. '{host="cn07",component=~"l1.*"} |= "dropped"'.
    """
    cfg = settings.get()
    if rejected:
        write_lines(rejected_lines(cfg, fmt))
        return
    q = build_query(
        selector, hosts, components, level, since, until, grep, ignore_case, limit, regex
    )
    if follow and source == "loki":
        raise PortalError("--follow works with the PostgreSQL store only (--source db)")
    if tail is not None and source == "loki":
        raise PortalError("--tail works with the PostgreSQL store only (--source db)")
    if tail is not None and limit is not None:
        raise PortalError("--tail and --limit do not combine: --tail N already means N lines")
    if tail is not None and tail < 0:
        raise PortalError("--tail must be 0 or more")
    if source == "loki" and q.since is None:
        q = replace(q, since=datetime.now(UTC) - timedelta(days=cfg.logs_retention_days))
    fmt_line = formatter(fmt)
    lines = (fmt_line(rec) for rec in records(cfg, q, source, follow, tail))
    if follow:
        write_following(lines)
    else:
        write_lines(lines)
