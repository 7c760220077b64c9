"""Plugins: a station package installed with pip adds a command, an API route, a page, a
component for ``portal run``, a Grafana dashboard and a setting; a broken plugin is named while
the rest keeps working; one-file plugins load from ``PORTAL_PLUGINS_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal import plugins, settings
from tests.conftest import run_portal

STATION_PKG = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "station-ext"
        version = "0.3.1"

        [project.entry-points.obsportal]
        station = "station_ext"
        broken = "station_ext.broken"

        [tool.setuptools]
        packages = ["station_ext"]

        [tool.setuptools.package-data]
        station_ext = ["pages/*.py"]
    """,
    "station_ext/__init__.py": '''
        """A station's own portal plugin."""
        from pathlib import Path

        import click

        from portal import hookimpl
        from portal.hookspecs import Component, Dashboard
        from portal.settings import Setting

        @hookimpl
        def register_settings():
            return [Setting("PORTAL_STATION_GREETING", "hello", lambda n, v: v, "Greeting.")]

        @click.command("station-hello")
        def hello():
            """Greet from the station plugin."""
            from portal import settings
            click.echo(settings.get().extra["PORTAL_STATION_GREETING"] + " from the station")

        @hookimpl
        def register_commands(cli):
            cli.add_command(hello)

        @hookimpl
        def register_blueprints(settings):
            import flask
            bp = flask.Blueprint("station", __name__)

            @bp.get("/api/station/hello")
            def station_hello():
                cfg = flask.current_app.config["PORTAL_SETTINGS"]
                return flask.jsonify({"greeting": cfg.extra["PORTAL_STATION_GREETING"]})

            return [bp]

        @hookimpl
        def register_pages():
            return [Path(__file__).parent / "pages"]

        @hookimpl
        def register_components(settings):
            out = settings.data_dir / "station-heartbeat.txt"
            code = f"open({str(out)!r}, 'w').write('beat')"
            return [Component("station-heartbeat", (__import__("sys").executable, "-c", code))]

        @hookimpl
        def register_dashboards():
            model = {
                "uid": "station-ext",
                "title": "Station",
                "panels": [{
                    "id": 1, "type": "timeseries", "title": "Targets up",
                    "datasource": {"type": "prometheus", "uid": "obs-prometheus"},
                    "targets": [{"refId": "A", "expr": "sum(up)",
                                 "datasource": {"type": "prometheus", "uid": "obs-prometheus"}}],
                }],
                "templating": {"list": []},
            }
            return [Dashboard("station", lambda: model)]
    ''',
    "station_ext/pages/station_page.py": """
        TITLE = "Station page"
        PATH = "/station"

        def layout(**params):
            return "Station **notes** from the plugin page"
    """,
    "station_ext/broken.py": """
        raise RuntimeError("station database missing")
    """,
}


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "-q", *args], check=True, capture_output=True, timeout=300
    )


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The station package pip-installed into this venv; uninstalled afterwards."""
    src = tmp_path_factory.mktemp("station-ext")
    for rel, text in STATION_PKG.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text).lstrip())
    _pip("install", "--no-build-isolation", "--no-deps", "--no-index", str(src))
    plugins.reset()
    settings.get.cache_clear()
    try:
        yield src
    finally:
        _pip("uninstall", "-y", "station-ext")
        plugins.reset()
        settings.get.cache_clear()


def test_builtin_capabilities_load_as_plugins() -> None:
    out = run_portal("plugins", check=True).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    for name in ("core", "stack", "db", "events", "hosts", "collectors", "logs", "alerts"):
        assert "built-in" in rows[name], out
    assert "register_pages" in rows["web"] and "register_dashboards" in rows["grafana"]
    assert "error" not in out


def test_components_start_in_order_and_follow_their_restart_policy(cfg: settings.Settings) -> None:
    from portal import run
    from portal.hookspecs import Component

    names = [c.name for c in run.components(cfg)]
    assert names[:3] == ["maintenance", "collector", "logshipper"] and names[-1] == "web"
    assert "demo" in names and "demo" not in [c.name for c in run.components(cfg, demo=False)]
    always = Component("a", ("true",))
    once = Component("b", ("true",), restart="on-failure")
    assert not run.finished(always, 0) and not run.finished(once, 1) and run.finished(once, 0)
    assert run.finished(Component("c", ("true",), restart="never"), 1)
    call = Component("d", call="pathlib:Path")  # a module:function run in a fresh Python
    assert call.command()[-1] == "import pathlib as m; m.Path()"
    subprocess.run(call.command(), check=True, timeout=60)
    with pytest.raises(ValueError, match="give argv or call"):
        Component("e").command()


def test_station_plugin_command_and_setting(station: Path) -> None:
    result = run_portal("station-hello", env={"PORTAL_STATION_GREETING": "moin"}, check=True)
    assert result.stdout.strip() == "moin from the station"
    shown = run_portal("settings", "show", check=True).stdout
    assert "PORTAL_STATION_GREETING=hello" in shown
    listed = run_portal("plugins", check=True).stdout
    assert "station-ext:station" in listed and "station-ext 0.3.1" in listed


def test_station_plugin_route_page_and_error_card(station: Path, cfg: settings.Settings) -> None:
    from portal.web.app import create_app

    app = create_app(cfg.replace(extra={"PORTAL_STATION_GREETING": "ahoy"}))
    client = app.test_client()
    assert client.get("/api/station/hello").get_json() == {"greeting": "ahoy"}
    pages = {p["path"]: p for p in client.get("/api/pages").get_json()}
    assert pages["/station"]["error"] == "", pages["/station"]
    import dash

    page = next(p for p in dash.page_registry.values() if p["path"] == "/station")
    assert "Station **notes**" in json.dumps(page["layout"]().to_plotly_json(), default=str)
    # the broken plugin is named on every page, and the rest of the portal answers
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert "station-ext:broken" in layout and "station database missing" in layout
    assert client.get("/healthz").status_code == 200


def test_station_plugin_component_and_dashboard(
    station: Path, cfg: settings.Settings, tmp_path: Path
) -> None:
    from portal import run
    from portal.grafana import provisioning

    comps = {c.name: c for c in run.components(cfg, demo=False)}
    assert {"web", "collector", "station-heartbeat"} <= set(comps)
    assert "demo" not in comps
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(comps["station-heartbeat"].command(), check=True, timeout=60)
    assert (cfg.data_dir / "station-heartbeat.txt").read_text() == "beat"

    assert "station" in provisioning.registered(cfg)
    out = run_portal("grafana", "export", str(tmp_path / "gp"), check=True).stdout
    model = json.loads((tmp_path / "gp" / "dashboards" / "station.json").read_text())
    assert model["uid"] == "station-ext", out
    assert (tmp_path / "gp" / "dashboards" / "overview.json").exists()


def test_broken_plugin_is_named_and_the_cli_keeps_working(station: Path) -> None:
    result = run_portal("db", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: portal db" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "station-ext:broken" in line]
    assert warnings == [
        "warning: plugin station-ext:broken (station-ext 0.3.1): "
        "RuntimeError: station database missing"
    ]
    assert "Traceback" not in result.stderr
    listed = run_portal("plugins", check=True).stdout
    assert "error: RuntimeError: station database missing" in listed


def test_one_file_plugins_from_the_plugins_dir(tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(
        textwrap.dedent(
            '''
            import click
            from portal import hookimpl

            @click.command("greet")
            def greet():
                """Say hello from a one-file plugin."""
                click.echo("hello from greet.py")

            @hookimpl
            def register_commands(cli):
                cli.add_command(greet)
            '''
        )
    )
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "_private.py").write_text("raise SystemExit('must not be imported')\n")
    env = {"PORTAL_PLUGINS_DIR": str(tmp_path)}
    result = run_portal("greet", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from greet.py"
    assert "warning: plugin file:bad" in result.stderr and "SyntaxError" in result.stderr
    listed = run_portal("plugins", env=env, check=True).stdout
    greet = next(line for line in listed.splitlines() if line.startswith("file:greet "))
    assert str(tmp_path / "greet.py") in greet and "register_commands" in greet
    assert "_private" not in listed


def test_help_of_every_command_imports_no_web_or_dataframe_stack(
    station: Path, tmp_path: Path
) -> None:
    """Walks the whole command tree in a fresh interpreter, station plugin included."""
    script = textwrap.dedent(
        """
        import sys
        import click
        from portal.cli import cli
        from portal.lazy import LazyCommand

        def walk(cmd, path):
            yield path, cmd
            real = cmd.real() if isinstance(cmd, LazyCommand) else cmd
            if isinstance(real, click.Group):
                ctx = click.Context(real, info_name=path[-1])
                for name in real.list_commands(ctx):
                    yield from walk(real.get_command(ctx, name), path + [name])

        seen = []
        for path, cmd in walk(cli, ["portal"]):
            if isinstance(cmd, LazyCommand):
                real_help = cmd.real().get_short_help_str(limit=500)
                assert cmd.short_help == real_help, (path, cmd.short_help, real_help)
            try:
                cli.main(path[1:] + ["--help"], prog_name="portal", standalone_mode=False)
            except SystemExit as exc:
                assert exc.code in (0, None), path
            seen.append(" ".join(path))
        heavy = sorted(m for m in ("dash", "pandas", "plotly", "flask") if m in sys.modules)
        print("HEAVY", heavy)
        print("SEEN", len(seen))
        print("\\n".join(seen))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PORTAL_PLUGINS_DIR": ""},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    seen = result.stdout.split("SEEN", 1)[1].splitlines()[1:]
    for command in ("portal logs", "portal collect host", "portal db upgrade", "portal web"):
        assert command in seen
    assert "portal station-hello" in seen
    assert len(seen) > 40


def test_uninstalling_the_station_package_removes_what_it_added(
    station: Path, cfg: settings.Settings
) -> None:
    """Last in this module: uninstalls the package the fixture installed."""
    _pip("uninstall", "-y", "station-ext")
    plugins.reset()
    result = run_portal("station-hello")
    assert result.returncode == 2 and "No such command 'station-hello'" in result.stderr
    refused = run_portal("settings", "show", env={"PORTAL_STATION_GREETING": "moin"})
    assert refused.returncode == 2
    assert "PORTAL_STATION_GREETING: unknown setting" in refused.stderr
    from portal import run
    from portal.grafana import provisioning
    from portal.web.app import create_app

    assert "station-heartbeat" not in {c.name for c in run.components(cfg)}
    assert "station" not in provisioning.registered(cfg)
    client = create_app(cfg).test_client()
    assert client.get("/api/station/hello").status_code == 404
    assert "/station" not in {p["path"] for p in client.get("/api/pages").get_json()}
    assert "station-ext" not in client.get("/_dash-layout").get_data(as_text=True)
