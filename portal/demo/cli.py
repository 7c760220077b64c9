"""``portal demo run | seed``: a simulated telescope for newcomers, demos and tests."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import click

from portal import settings
from portal.auth.roles import requires
from portal.demo import model
from portal.demo.faults import KINDS


def _layout_options(fn: click.decorators.FC) -> click.decorators.FC:
    """The simulated telescope's shape: a ``--scale`` preset, then what is given explicitly."""
    options = [
        click.option(
            "--scale",
            type=click.Choice(sorted(model.SCALES)),
            default="demo",
            show_default=True,
            help="Preset shape: demo (32 beams, 12 hosts) or full (the real instrument: 1,024 "
            "beams, 128 compute and 16 storage nodes, 165,537 pointings a day).",
        ),
        click.option(
            "--beams",
            type=click.IntRange(1, 4096),
            default=None,
            help="Beams in all, spread over the compute nodes (instead of --beams-per-node).",
        ),
        click.option(
            "--hosts",
            default="",
            metavar="ROLE=N,...",
            help="Hosts by role, e.g. compute=128,storage=16 (head01 and batch01: one each).",
        ),
        click.option("--compute-nodes", type=click.IntRange(1, 1024), default=None),
        click.option("--beams-per-node", type=click.IntRange(1, 64), default=None),
        click.option("--storage-nodes", type=click.IntRange(1, 1024), default=None),
        click.option(
            "--pointings-per-day",
            type=click.IntRange(1, 10_000_000),
            default=None,
            help="Across all beams (default: the preset's, the real telescope's 165,537).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _shape(options: dict[str, Any]) -> tuple[list[model.SimHost], int]:
    """Hosts and pointings a day from the layout options; a bad combination is one line."""
    from portal.errors import PortalError

    try:
        return model.shape(**options)
    except PortalError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def demo() -> None:
    """The pipeline simulator: live telemetry (`run`), history (`seed`), rehearsals (`fault`,
    `incident`)."""


@requires("operator")
@demo.command("run")
@click.option(
    "--speed",
    type=click.FloatRange(0.1, 10_000),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (day/night and sky patterns speed up).",
)
@click.option(
    "--base-port",
    type=click.IntRange(0, 65000),
    default=9200,
    show_default=True,
    help="First /metrics port; host i gets base+i (0: any free ports).",
)
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option(
    "--mirror-seconds",
    type=click.FloatRange(0.2, 3600),
    default=10.0,
    show_default=True,
    help="How often samples are written to the database.",
)
@_layout_options
def run_cmd(speed: float, base_port: int, bind: str, mirror_seconds: float, **shape: Any) -> None:
    """Run simulated hosts, each with its own /metrics, registered in the inventory."""
    from portal.demo.live import Live

    cfg = settings.get()
    hosts, pointings_per_day = _shape(shape)
    live = Live(cfg, hosts, speed, base_port, bind, pointings_per_day, mirror_seconds)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        live.register()
        ports = ", ".join(f"{h}:{p}" for h, p in live.ports.items())
        click.echo(f"demo: {len(hosts)} simulated hosts at speed {speed:g} ({ports})", err=True)
        live.run(stop)
    finally:
        live.close()


@requires("operator")
@demo.command("seed")
@click.option("--days", type=int, default=30, show_default=True, help="Days of history (1-400).")
@click.option(
    "--step",
    "step_seconds",
    type=int,
    default=300,
    show_default=True,
    help="Seconds between simulated metric samples (>= 10).",
)
@click.option(
    "--prometheus",
    is_flag=True,
    help="Also backfill the local Prometheus (promtool blocks; its retention applies).",
)
@_layout_options
def seed_cmd(days: int, step_seconds: int, prometheus: bool, **shape: Any) -> None:
    """Backfill DAYS of history into PostgreSQL (idempotent: re-running adds nothing twice)."""
    from portal.demo.seed import seed

    hosts, pointings_per_day = _shape(shape)
    result = seed(
        settings.get(),
        days,
        hosts,
        step_seconds,
        pointings_per_day,
        on_progress=lambda m: click.echo(m, err=True),
        prometheus=prometheus,
    )
    click.echo(result.summary())


def _fault_file() -> Path:
    from portal.demo import faults

    return faults.path(settings.get().data_dir)


def _record(action: str, target: str, params: dict[str, Any]) -> None:
    """Audit entry and event for a fault change; without a database, one warning line."""
    from portal.auth import audit, cli_access
    from portal.events import bus as events

    cfg = settings.get()
    try:
        audit.record(
            cfg.database_url, cli_access.current(), audit.Entry(action, target, params=params)
        )
        topic = "demo.fault_injected" if action == "demo.fault" else "demo.fault_cleared"
        events.publish(cfg.database_url, topic, {"target": target, **params}, source="demo")
    except Exception as exc:
        click.echo(f"warning: {action} {target} not audited ({str(exc).splitlines()[0]})", err=True)


def _check_host(host: str) -> None:
    """One warning line when the inventory knows no such host (a typo does nothing at all)."""
    from portal.inventory import registry as inventory

    try:
        known = {h.name for h in inventory.list_hosts(settings.get())}
    except Exception:
        return  # no database: nothing to check against
    if host not in known:
        click.echo(
            f"warning: no host {host} in the inventory; the simulator ignores faults on hosts "
            "it does not simulate",
            err=True,
        )


@demo.group("fault")
def fault() -> None:
    """Rehearse failures: `portal demo fault KIND TARGET [--for 10m]`, `list`, `clear`.

    The running `portal demo run` picks faults up from <PORTAL_DATA_DIR>/demo/faults.json
    within a second; each clears by itself after --for.
    """


def _fault_command(kind: str) -> None:
    spec = KINDS[kind]

    @requires("operator")
    @fault.command(
        kind,
        help=f"Raise {spec.alert}: {spec.effect}. TARGET: {spec.target}.",
    )
    @click.argument("target")
    @click.option(
        "--for",
        "duration",
        default=f"{int(spec.default_for // 60)}m",
        show_default=True,
        help="How long the fault lasts (30s, 10m, 2h).",
    )
    def inject(target: str, duration: str) -> None:
        from portal.demo import faults
        from portal.timeparse import parse_duration

        seconds = parse_duration(duration, "--for").total_seconds()
        f = faults.inject(_fault_file(), kind, target, seconds)
        _check_host(f.host)
        _record("demo.fault", f.target, {"kind": kind, "seconds": seconds, "id": f.id})
        click.echo(f"fault {f.id}: {kind} on {f.target} for {duration} (alert {spec.alert})")


for _kind in KINDS:
    _fault_command(_kind)


@fault.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per active fault.")
def fault_list(as_json: bool) -> None:
    """The active faults and how long each has left."""
    from portal.demo import faults

    active = [faults.describe(f) for f in faults.active(_fault_file())]
    if as_json:
        for row in active:
            click.echo(json.dumps(row))
        return
    if not active:
        click.echo("no active faults")
    for row in active:
        click.echo(
            f"{row['id']}  {row['kind']:<16} {row['target']:<16} {row['alert']:<20} "
            f"{row['left_seconds']:.0f} s left"
        )


@requires("operator")
@fault.command("clear")
@click.argument("kind", required=False)
@click.argument("target", required=False)
def fault_clear(kind: str | None, target: str | None) -> None:
    """End active faults now: all of them, those of KIND, or KIND on TARGET."""
    from portal.demo import faults

    ended = faults.clear(_fault_file(), kind, target)
    for f in ended:
        _record("demo.fault_clear", f.target, {"kind": f.kind, "id": f.id})
    click.echo(f"cleared {len(ended)} fault{'' if len(ended) == 1 else 's'}")


@requires("operator")
@demo.command("incident")
@click.option(
    "--speed",
    type=click.FloatRange(1, 3600),
    default=1.0,
    show_default=True,
    help="Script seconds per real second (waits and fault durations alike).",
)
def incident_cmd(speed: float) -> None:
    """Play a scripted 3 a.m. incident on the running simulator (about 46 minutes at speed 1)."""
    from portal.demo import incident

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    minutes = incident.script_length() / speed / 60
    click.echo(f"incident: {len(incident.SCRIPT)} beats over {minutes:.1f} minutes", err=True)
    injected = incident.play(_fault_file(), speed, say=lambda line: click.echo(line), stop=stop)
    _record("demo.incident", "cluster", {"speed": speed, "faults": len(injected)})
