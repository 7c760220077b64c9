"""``portal alerts``: list recorded alerts, check the rule files with promtool."""

from __future__ import annotations

import json
import sys

import click

from portal import settings


@click.group()
def alerts() -> None:
    """Alerts recorded from Alertmanager, and the Prometheus alert rules."""


@alerts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved alerts.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(show_all: bool, limit: int, as_json: bool) -> None:
    """Alerts firing now (latest notification per alert), newest first."""
    from portal.alerts.query import latest

    found = latest(settings.get().database_url, firing_only=not show_all, limit=limit)
    for a in found:
        if as_json:
            click.echo(json.dumps({**a.__dict__, "received": a.received.isoformat()}))
        else:
            where = a.labels.get("host", "-")
            click.echo(f"{a.received:%Y-%m-%d %H:%M:%S} {a.status:8} {where:10} {a.summary}")
    if not found and not as_json:
        click.echo("no firing alerts" if not show_all else "no alerts recorded")


@alerts.command("check")
def check_cmd() -> None:
    """Run `promtool check rules` and `promtool test rules` on prometheus/; exit 1 on failure."""
    from portal.alerts import rules

    results = rules.check(rules.rule_files(settings.get()), rules.tests_dir())
    for r in results:
        click.echo(f"{'ok' if r.ok else 'FAILED'}: promtool {r.step}")
        if not r.ok:
            click.echo(r.output)
    if not all(r.ok for r in results):
        sys.exit(1)
