"""Each malformed setting gives one clear line naming it, and exit code 2."""

from __future__ import annotations

import socket

import pytest

from portal import settings
from portal.errors import SettingsError
from tests import readme
from tests.conftest import run_portal


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("PORTAL_DATABASE_URL", "mysql://x@h/db", "must start with postgresql://"),
        ("PORTAL_DATABASE_URL", "postgresql://h:99999/db", "malformed URL"),
        ("PORTAL_PROMETHEUS_URL", "localhost:9090", "must start with http://"),
        ("PORTAL_LOKI_URL", "ftp://loki", "must start with http://"),
        ("PORTAL_WEB_WORKERS", "many", "is not a whole number"),
        ("PORTAL_WEB_WORKERS", "0", "out of range"),
        ("PORTAL_WEB_BIND", "8050", "is not HOST:PORT"),
        ("PORTAL_WRITE_FLUSH_SECONDS", "soon", "is not a number"),
        ("PORTAL_LOG_LEVEL", "LOUD", "is not one of"),
        ("PORTAL_NO_SUCH_THING", "1", "unknown setting"),
    ],
)
def test_malformed_setting_is_one_line_exit_2(var: str, value: str, expect: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings.load({var: value})
    assert err.value.setting == var
    result = run_portal("settings", "show", env={var: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {var}: ")
    assert expect in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_database_names_the_setting() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    result = run_portal(
        "db", "status", env={"PORTAL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x"}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: PORTAL_DATABASE_URL: cannot connect to")
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_in_use_names_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SettingsError, match=f"PORTAL_PROMETHEUS_URL: port {port}"):
            settings.check_port_free("PORTAL_PROMETHEUS_URL", "127.0.0.1", port)


def test_defaults_are_valid_and_documented() -> None:
    cfg = settings.load({})
    assert cfg.web_port == 8050
    table = settings.markdown_table()
    for spec in settings.SPECS:
        assert f"`{spec.env}`" in table
    current = readme.README.read_text()
    assert readme.render(current) == current, (
        "README settings table is stale: run `python -m tests.readme`"
    )


def test_bad_option_is_clicks_one_line_usage_error() -> None:
    result = run_portal("events", "tail", "--since", "notanumber")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--since'" in result.stderr


def test_settings_show_hides_passwords_in_urls() -> None:
    url = "postgresql://reader:s3cret@127.0.0.1:1/obs"
    out = run_portal("settings", "show", env={"PORTAL_DATABASE_URL": url}, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("PORTAL_DATABASE_URL="))
    assert "s3cret" not in out and "reader" in line and "127.0.0.1:1/obs" in line
