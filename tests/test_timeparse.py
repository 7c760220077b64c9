"""The one time parser: the same grammar for ``--since``, ``?from=`` and API arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal import quicklook as ql
from portal.errors import PortalError
from portal.timeparse import is_relative, parse_duration, parse_time
from tests.conftest import run_portal

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("now", NOW),
        ("now-6h", NOW - timedelta(hours=6)),
        ("now-30m", NOW - timedelta(minutes=30)),
        ("2026-12-01T06:00:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        ("2026-12-01 06:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        ("2026-12-01T06:00:00Z", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        ("2026-12-01T07:00:00+01:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        ("2026-12-01T07:00:00 01:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),  # '+' lost in a URL
    ],
)
def test_every_form_gives_an_aware_utc_time(text: str, expected: datetime) -> None:
    when = parse_time(text, "--since", NOW)
    assert when == expected and when.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2x", "--since '2x' is neither a duration (30m, 2h, 3d, 1w, now-6h) nor an ISO time"),
        ("now-2x", "--since 'now-2x' is neither a duration"),
        ("yesterday-ish", "--since 'yesterday-ish' is neither a duration"),
        ("3000000d", "--since '3000000d' reaches back before the year 1"),
        ("99999999999999999999999w", "--since '99999999999999999999999w' is too long a duration"),
    ],
)
def test_bad_and_huge_values_are_one_line_errors_naming_the_parameter(
    text: str, problem: str
) -> None:
    with pytest.raises(PortalError) as err:
        parse_time(text, "--since", NOW)
    assert str(err.value).startswith(problem) and "\n" not in str(err.value)


def test_durations_and_relative_values() -> None:
    assert parse_duration("5m", "--range") == timedelta(minutes=5)
    with pytest.raises(PortalError, match="--range '5 parsecs' is not a duration"):
        parse_duration("5 parsecs", "--range")
    assert all(is_relative(t) for t in ("2h", "now", "now-6h", " NOW - 30m "))
    assert not any(is_relative(t) for t in ("2026-12-01", "soon", ""))


def test_pages_take_what_the_cli_takes() -> None:
    """``?from=2h`` and ``?from=now-6h&to=now`` work on pages as ``--since 2h`` does."""
    two = ql.TimeRange.parse(None, "2h")
    assert two.label == "custom" and round(two.seconds) == 2 * 3600
    assert two.query() == "range=custom&from=2h&to=now"  # a shared link stays relative
    grafana = ql.TimeRange.parse("custom", "now-6h", "now")
    assert round(grafana.seconds) == 6 * 3600 and grafana.query().endswith("from=now-6h&to=now")
    fixed = ql.TimeRange.parse("custom", "2026-03-01T12:00Z", "2026-03-01T14:00:00 01:00")
    assert fixed.start == datetime(2026, 3, 1, 12, tzinfo=UTC) and fixed.seconds == 3600
    assert fixed.query() == "range=custom&from=2026-03-01T12:00&to=2026-03-01T13:00"
    assert list(ql.RANGES) == ["1h", "6h", "24h", "7d"]
    with pytest.raises(PortalError, match="^from '3000000d' reaches back"):
        ql.TimeRange.parse(None, "3000000d")
    with pytest.raises(PortalError, match="^to 'later' is neither a duration"):
        ql.TimeRange.parse("custom", "2h", "later")


def test_cli_and_api_give_the_same_clear_error_for_a_huge_duration(cfg: object) -> None:
    import flask

    from portal.logs.api import blueprint

    result = run_portal("logs", "--since", "3000000d")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --since '3000000d' reaches back before the year 1"
    app = flask.Flask(__name__)
    app.config["PORTAL_SETTINGS"] = cfg
    app.register_blueprint(blueprint)
    resp = app.test_client().get("/api/logs", query_string={"since": "3000000d"})
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "--since '3000000d' reaches back before the year 1"}
