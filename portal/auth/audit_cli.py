"""``portal audit``: the audit log, oldest first, as plain text or JSON lines.

Only click and the time parser are imported at the top: ``portal audit --help`` loads no
database stack.
"""

from __future__ import annotations

import click

from portal import settings
from portal.errors import PortalError
from portal.timeparse import parse_time

FORMATS = ("text", "jsonl")  # as portal.auth.audit.FORMATS, without importing it


@click.command("audit")
@click.option(
    "--since", default="24h", show_default=True, help="Start: 30m, 2h, 3d, 1w ago, or an ISO time."
)
@click.option("--until", help="End (exclusive): same forms as --since.")
@click.option("--actor", help="Actor or glob, e.g. user:alice, token:*, cli:*.")
@click.option("--action", help="Action or glob, e.g. login.*, user.add, alert.received.")
@click.option("--target", help="Target or glob.")
@click.option("--limit", type=int, default=None, help="At most this many entries (default: all).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they are written.")
def audit(
    since: str,
    until: str | None,
    actor: str | None,
    action: str | None,
    target: str | None,
    limit: int | None,
    fmt: str,
    follow: bool,
) -> None:
    """Print the audit log, oldest first.

    Text lines: `<time> <actor> <role> <source> <action> <target> <outcome> <reason> <params>`
    (an empty field is `-`, one with spaces is JSON-quoted; params is a JSON object).
    """
    start = parse_time(since, "--since")
    end = parse_time(until, "--until") if until else None
    if end is not None and end <= start:
        raise PortalError(f"--until {until!r} is not after --since {since!r}")
    if limit is not None and limit < 0:
        raise PortalError(f"--limit {limit} must be 0 or more")
    if follow and (until or limit is not None):
        raise PortalError("--follow prints until interrupted: leave out --until and --limit")
    from portal.auth import audit as log
    from portal.logs.cli import write_following, write_lines

    url = settings.get().database_url
    line = log.formatter(fmt)
    if follow:
        write_following(line(e) for e in log.follow(url, actor, action, target, since=start))
        return
    entries = log.query(url, actor, action, target, since=start, until=end, limit=limit)
    write_lines(line(e) for e in entries)
