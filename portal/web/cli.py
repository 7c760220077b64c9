"""``portal web`` (serve the portal) and ``portal quicklook new NAME`` (a plugin skeleton)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from portal import settings
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.resources import shipped

SKELETON = '''"""{title}: one line saying what this quicklook shows and for whom."""

import plotly.express as px

from portal import quicklook as ql

TITLE = "{title}"


def layout(time_range: ql.TimeRange, beam: int = 0):
    """Called on every visit; beam is a number input above the page and ?beam=3 in the URL."""
    df = ql.sql(
        "SELECT time, rfi_fraction FROM pointings "
        "WHERE beam = :beam AND time >= :start AND time < :end ORDER BY time",
        beam=beam, start=time_range.start, end=time_range.end,
    )
    return px.line(df, x="time", y="rfi_fraction", title=f"Beam {{beam}}: RFI-masked fraction")
'''


@requires("operator")
@click.command("web")
def web() -> None:
    """Serve the portal under gunicorn (PORTAL_WEB_BIND, PORTAL_WEB_WORKERS)."""
    from portal.web import server

    server.serve(settings.get())


@click.group("quicklook")
def quicklook() -> None:
    """Quicklook plugins: one Python file = one page."""


@requires("scientist")
@quicklook.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write to (default: the first PORTAL_QUICKLOOKS_PATH folder, else quicklooks/).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def new(name: str, folder: Path | None, force: bool) -> None:
    """Write a working quicklook skeleton NAME.py; it appears in the portal within seconds."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
        raise PortalError(f"quicklook name {name!r} must be a Python identifier like rfi_beams")
    cfg = settings.get()
    target_dir = folder or (
        cfg.quicklooks_path[0] if cfg.quicklooks_path else shipped("quicklooks")
    )
    target = target_dir / f"{name}.py"
    if target.exists() and not force:
        raise PortalError(f"{target} already exists (use --force to overwrite)")
    target_dir.mkdir(parents=True, exist_ok=True)
    title = name.replace("_", " ").capitalize()
    target.write_text(SKELETON.format(title=title))
    from portal.web import loader, sources  # imports Dash: only here, so `--help` stays light

    click.echo(f"{target}  ->  {cfg.web_url}{loader.QUICKLOOK_PREFIX}{loader._slug(name)}")
    watched = sources.quicklook_folders(cfg)
    if target_dir.resolve() not in watched:
        click.echo(unwatched_hint(target_dir.resolve(), cfg.quicklooks_path))


def unwatched_hint(folder: Path, extra: tuple[Path, ...]) -> str:
    """What to set so the portal also loads quicklooks from ``folder``."""
    value = ":".join(str(p) for p in (*extra, folder))
    return (
        f"note: the portal does not watch {folder}, so this page will not appear there yet; "
        f"add the folder to the settings and restart the portal:\n"
        f"  PORTAL_QUICKLOOKS_PATH={value}"
    )
