"""``portal demo run | seed``: a simulated telescope for newcomers, demos and tests."""

from __future__ import annotations

import signal
import threading

import click

from portal import settings
from portal.auth.roles import requires
from portal.demo import model


def _layout_options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option("--compute-nodes", type=click.IntRange(1, 64), default=8, show_default=True)(
        fn
    )
    fn = click.option("--beams-per-node", type=click.IntRange(1, 64), default=4, show_default=True)(
        fn
    )
    fn = click.option("--storage-nodes", type=click.IntRange(1, 16), default=2, show_default=True)(
        fn
    )
    return click.option(
        "--pointings-per-day",
        type=click.IntRange(1, 10_000_000),
        default=model.POINTINGS_PER_DAY,
        show_default=True,
        help="Across all beams (the real telescope: 165,537).",
    )(fn)


@click.group()
def demo() -> None:
    """The pipeline simulator: live telemetry (`run`) or history (`seed`)."""


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
def run_cmd(
    speed: float,
    base_port: int,
    bind: str,
    mirror_seconds: float,
    compute_nodes: int,
    beams_per_node: int,
    storage_nodes: int,
    pointings_per_day: int,
) -> None:
    """Run simulated hosts, each with its own /metrics, registered in the inventory."""
    from portal.demo.live import Live

    cfg = settings.get()
    hosts = model.layout(compute_nodes, beams_per_node, storage_nodes)
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
def seed_cmd(
    days: int,
    step_seconds: int,
    prometheus: bool,
    compute_nodes: int,
    beams_per_node: int,
    storage_nodes: int,
    pointings_per_day: int,
) -> None:
    """Backfill DAYS of history into PostgreSQL (idempotent: re-running adds nothing twice)."""
    from portal.demo.seed import seed

    hosts = model.layout(compute_nodes, beams_per_node, storage_nodes)
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
