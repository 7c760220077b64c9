"""``portal hosts``: the inventory from the command line (each change updates scrape targets)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from portal import settings
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.inventory import liveness
from portal.inventory import registry as inventory


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PortalError(f"label {pair!r} must look like key=value")
        out[key] = value
    return out


@click.group()
def hosts() -> None:
    """Hosts and components of the cluster; Prometheus scrapes what is listed here."""


@hosts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """Every host with its role, collector address and state (up, down, maintenance, ...).

    The state is the declared one (maintenance, retired) or else whether the host's collector
    answers Prometheus; without Prometheus, how old the host's newest stored sample is.
    """
    cfg = settings.get()
    found = liveness.host_states(cfg)
    if found.problem is not None:
        click.echo(f"warning: {found.problem}; states from the database's last samples", err=True)
    if as_json:
        rows = []
        for h in found.hosts:
            row = asdict(h)
            row["last_seen"] = h.last_seen.isoformat() if h.last_seen else None
            rows.append({**row, "source": found.source})
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'HOST':16} {'ROLE':10} {'COLLECTOR':24} {'STATE':12} DECLARED")
    for h in found.hosts:
        where = f"{h.address}:{h.collector_port}"
        click.echo(f"{h.name:16} {h.role:10} {where:24} {h.state:12} {h.declared}")


@requires("operator")
@hosts.command("add")
@click.argument("name")
@click.option("--role", default="compute", show_default=True, help="compute, storage, head, ...")
@click.option("--address", default="127.0.0.1", show_default=True, help="Where to scrape it.")
@click.option("--port", type=int, default=None, help="Collector port [PORTAL_COLLECTOR_PORT].")
@click.option(
    "--state",
    type=click.Choice(inventory.STATES),
    default=None,
    help="Declared state [up for a new host; an existing host keeps its own].",
)
@click.option("--label", "labels", multiple=True, help="key=value; repeatable.")
def add_cmd(
    name: str,
    role: str,
    address: str,
    port: int | None,
    state: str | None,
    labels: tuple[str, ...],
) -> None:
    """Add (or update) host NAME; Prometheus starts scraping it within seconds.

    Says what it reached: whether the collector at the address answers right now.
    """
    cfg = settings.get()
    existed = inventory.get_host(cfg, name) is not None
    h = inventory.add_host(cfg, name, role, address, port, labels=_labels(labels), state=state)
    where = f"{h.address}:{h.collector_port}"
    answers = liveness.collector_answers(h.address, h.collector_port)
    reach = f"its collector at {where} " + ("answers" if answers else "does not answer yet")
    declared = "" if h.state == "up" else f" (declared {h.state})"
    click.echo(f"host {h.name} ({h.role}) {'updated' if existed else 'added'}{declared}; {reach}")


@requires("operator")
@hosts.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Remove host NAME and its components from the inventory."""
    inventory.remove_host(settings.get(), name)
    click.echo(f"host {name} removed")


@requires("operator")
@hosts.command("state")
@click.argument("name")
@click.argument("state", type=click.Choice(inventory.STATES))
def state_cmd(name: str, state: str) -> None:
    """Declare host NAME's state (retired hosts are no longer scraped).

    A declared state stays until an operator changes it: the demo and a host collector
    registering themselves again never reset it.
    """
    inventory.set_host_state(settings.get(), name, state)
    click.echo(f"host {name} is {state}")


@hosts.command("components")
@click.argument("host", required=False)
def components_cmd(host: str | None) -> None:
    """Components, on every host or on HOST."""
    click.echo(f"{'HOST':16} {'COMPONENT':20} {'KIND':10} {'PORT':6} MATCH")
    for c in inventory.list_components(settings.get(), host):
        port = str(c.metrics_port or "-")
        click.echo(f"{c.host:16} {c.name:20} {c.kind:10} {port:6} {c.process_match or '-'}")


@requires("operator")
@hosts.command("add-component")
@click.argument("host")
@click.argument("name")
@click.option("--kind", type=click.Choice(inventory.KINDS), default="real-time", show_default=True)
@click.option("--match", "process_match", default=None, help="Regex on the process command line.")
@click.option("--metrics-port", type=int, default=None, help="Port of its own /metrics, if any.")
def add_component_cmd(
    host: str, name: str, kind: str, process_match: str | None, metrics_port: int | None
) -> None:
    """Add (or update) component NAME on HOST; the host collector watches its process."""
    inventory.add_component(settings.get(), host, name, kind, process_match, metrics_port)
    click.echo(f"component {name} on {host} ({kind})")


@requires("operator")
@hosts.command("remove-component")
@click.argument("host")
@click.argument("name")
def remove_component_cmd(host: str, name: str) -> None:
    """Remove component NAME from HOST."""
    inventory.remove_component(settings.get(), host, name)
    click.echo(f"component {name} on {host} removed")


@requires("operator")
@hosts.command("targets")
def targets_cmd() -> None:
    """Rewrite Prometheus' file_sd targets from the inventory (done after every change)."""
    from portal.metrics.targets import write_targets

    click.echo(str(write_targets(settings.get())))
