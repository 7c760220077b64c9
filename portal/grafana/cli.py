"""``portal grafana``: regenerate the provisioning folder, and prove every panel query."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

from portal import settings
from portal.auth.roles import requires
from portal.timeparse import parse_duration


@click.group()
def grafana() -> None:
    """Grafana provisioning as code (dashboards, datasources, alerting)."""


@requires("admin")
@grafana.command("build")
@click.option("--check", is_flag=True, help="Only report stale files; exit 1 if any.")
def build(check: bool) -> None:
    """Regenerate the shipped grafana-provisioning/ from portal/grafana/ (needs the dev extra)."""
    from portal.grafana import provisioning

    if check:
        stale = provisioning.stale()
        for rel in stale:
            click.echo(f"stale: grafana-provisioning/{rel}")
        if stale:
            click.echo("run `portal grafana build` and commit the result", err=True)
            sys.exit(1)
        click.echo("grafana-provisioning/ is up to date")
        return
    changed = provisioning.write()
    for rel in changed:
        click.echo(f"wrote grafana-provisioning/{rel}")
    click.echo(f"{len(changed)} file(s) changed")


@requires("operator")
@grafana.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def export(folder: Path) -> None:
    """Write a provisioning folder with every plugin's dashboards, for Grafana to mount.

    The PostgreSQL datasource's timescaledb flag is the configured database's.
    """
    from portal.grafana import provisioning

    count, changed, flag = provisioning.export(settings.get(), folder)
    click.echo(
        f"{folder}: {count} dashboards, {len(changed)} file(s) changed "
        f"(PostgreSQL datasource: timescaledb={'true' if flag else 'false'})"
    )


@grafana.command("check")
@click.option("--range", "range_", default="6h", help="Dashboard time range, e.g. 6h, 30d.")
@click.option("--dashboard", "only", multiple=True, help="Only these dashboards (file stems).")
def check(range_: str, only: tuple[str, ...]) -> None:
    """Run every panel query against the configured Prometheus and PostgreSQL; print times."""
    from portal.grafana import harness

    cfg = settings.get()
    span = parse_duration(range_, "--range").total_seconds()
    report = harness.run(cfg, span, only=only)
    for r in report.results:
        click.echo(r.line())
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@grafana.command("env")
def env() -> None:
    """Print the environment a Grafana server needs for the provisioning files (shell syntax)."""
    cfg = settings.get()
    db = urlsplit(cfg.database_url)
    values = {
        "PORTAL_PROMETHEUS_URL": cfg.prometheus_url,
        "PORTAL_ALERTMANAGER_URL": cfg.alertmanager_url,
        "PORTAL_LOKI_URL": cfg.loki_url,
        "OBS_PG_ADDRESS": f"{db.hostname}:{db.port or 5432}",
        "OBS_PG_DATABASE": unquote(db.path.lstrip("/")) or "obsportal",
        "OBS_PG_USER": unquote(db.username or "postgres"),
        "OBS_PG_PASSWORD": unquote(db.password or ""),
        "OBS_PORTAL_URL": cfg.web_url,
    }
    for key, value in values.items():
        click.echo(f"export {key}={shlex.quote(value)}")
