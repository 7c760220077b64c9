"""``portal events``: publish and follow events from the shell."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from portal import settings
from portal.auth.roles import requires
from portal.errors import PortalError


def cfg() -> settings.Settings:
    return settings.get()


@click.group()
def events() -> None:
    """Publish and follow events (table + LISTEN/NOTIFY)."""


def _payload(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PortalError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PortalError('payload must be a JSON object, e.g. \'{"host": "cn07"}\'')
    return value


@requires("operator")
@events.command("publish")
@click.argument("topic")
@click.argument("payload", default="{}")
@click.option("--source", default="cli", help="Who publishes.")
def events_publish(topic: str, payload: str, source: str) -> None:
    """Publish an event: TOPIC and a JSON object PAYLOAD; prints its id."""
    from portal.events import bus

    click.echo(bus.publish(cfg().database_url, topic, _payload(payload), source=source))


@events.command("tail")
@click.option("--topic", "topics", multiple=True, help="Topic or pattern (ops.*); repeatable.")
@click.option("--since", type=int, default=None, help="Start after this event id.")
@click.option("--name", default=None, help="Durable cursor name: resume where it stopped.")
@click.option("--follow/--no-follow", default=True, help="Keep waiting for new events.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
def events_tail(
    topics: tuple[str, ...],
    since: int | None,
    name: str | None,
    follow: bool,
    timeout: float | None,
    fmt: str,
) -> None:
    """Print events in order: missed ones first, then live ones."""
    from portal.events import bus

    if since is None and name is None and follow:
        since = bus.last_id(cfg().database_url)  # plain `tail`: only new events
    with bus.Subscription(cfg().database_url, topics, since=since, name=name) as sub:
        for ev in sub.events(follow=follow, timeout=timeout):
            if fmt == "jsonl":
                line = ev.as_json()
            else:
                line = (
                    f"{ev.time.isoformat()} {ev.id} {ev.topic} {ev.source or '-'} "
                    f"{json.dumps(ev.payload, default=str)}"
                )
            click.echo(line)
            sys.stdout.flush()
