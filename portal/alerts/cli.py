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
@click.option("--severity", default="", help="Only alerts with this severity label.")
@click.option("--host", default="", help="Only alerts with this host label.")
@click.option("--component", default="", help="Only alerts with this component label.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(
    show_all: bool, severity: str, host: str, component: str, limit: int, as_json: bool
) -> None:
    """Alerts firing now (latest notification per alert), newest first, with who silenced
    them until when (asked from Alertmanager)."""
    from portal.alerts import alertmanager, runbooks
    from portal.alerts.query import latest, when
    from portal.errors import BackendUnavailable

    cfg = settings.get()
    found = latest(
        cfg.database_url,
        firing_only=not show_all,
        limit=limit,
        severity=severity,
        host=host,
        component=component,
    )
    silences: list[alertmanager.Silence] | None = None
    if any(a.status == "firing" for a in found):
        try:
            silences = alertmanager.silences(cfg.alertmanager_url)
        except BackendUnavailable as exc:
            click.echo(f"warning: Alertmanager unavailable, silences unknown: {exc}", err=True)
    for a in found:
        muted = alertmanager.describe(a.labels, a.status == "firing", silences)
        if as_json:
            link = runbooks.link(
                a.annotations.get("runbook_url", ""), cfg.web_url, cfg.runbook_base_url
            )
            record = {**a.__dict__, "received": a.received.isoformat()}
            click.echo(json.dumps({**record, "silenced": muted, "runbook": link}))
        else:
            click.echo(
                f"{a.status:8} {a.severity or '-':8} {when(a.starts_at):23} "
                f"{a.host or '-':10} {a.summary}  [silenced: {muted}]"
            )
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
