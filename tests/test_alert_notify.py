"""Notifications to people, the Alerts page, the runbooks and ``portal alerts list``.

The end-to-end fixture runs everything real on free ports: a Prometheus whose rule fires at
once, an Alertmanager with the config ``portal/stack/configs.py`` generates from
``PORTAL_NOTIFY_*`` settings, an SMTP server (aiosmtpd), a small HTTP server standing in for a
Slack/Mattermost incoming webhook, and the portal app behind its access control receiving
Alertmanager's webhook with the ``alertmanager`` token. Chromium then reads the Alerts page of a
``portal web`` whose Prometheus is down.
"""

from __future__ import annotations

import email
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from portal.alerts import runbooks
from portal.alerts.query import latest
from portal.auth import bootstrap
from portal.errors import SettingsError
from portal.events import bus as events
from portal.settings import Settings, load
from portal.stack import configs, process
from tests.conftest import REPO, Alerting, free_port, run_portal, shared_tmpdir, start_alerting

ALERT = "PortalNotifyE2E"
SUMMARY = "notify e2e on nh-host fired"
AMTOOL = shutil.which("amtool")


# -- the generated Alertmanager config ----------------------------------------------------------
def amtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    assert AMTOOL, "amtool not installed (Debian package prometheus-alertmanager)"
    return subprocess.run(
        [AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "notify",
    [
        {},
        {"notify_webhook_url": "https://chat.example.org/hooks/abc"},
        {
            "notify_smtp": "mail.example.org:587",
            "notify_email_from": "portal@example.org",
            "notify_email_to": ("ops@example.org", "oncall@example.org"),
            "notify_smtp_user": "portal",
            "notify_smtp_password_file": Path("/etc/obsportal/smtp-password"),
            "notify_webhook_url": "http://127.0.0.1:9/hook",
            "notify_repeat_interval": "12h",
        },
    ],
    ids=["portal-only", "webhook", "mail-auth-and-webhook"],
)
def test_generated_alertmanager_config_passes_amtool(
    cfg: Settings, tmp_path: Path, notify: dict[str, Any]
) -> None:
    am = configs.alertmanager_config(cfg.replace(**notify))
    path = configs.write(tmp_path / "alertmanager.yml", am)
    checked = amtool_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routes = am["route"]["routes"]
    assert routes[0] == {"receiver": "portal", "continue": True}  # the portal gets everything
    assert all(r["continue"] for r in routes)
    hook = am["receivers"][0]["webhook_configs"][0]
    assert hook["http_config"]["authorization"]["credentials_file"].endswith("alertmanager.token")
    by_name = {r["receiver"]: r for r in routes}
    if "notify_smtp" in notify:
        assert by_name["email"]["matchers"] == ['severity=~"critical|page"']
        assert by_name["email"]["repeat_interval"] == "12h"
        (mail,) = next(r for r in am["receivers"] if r["name"] == "email")["email_configs"]
        assert mail["to"] == "ops@example.org, oncall@example.org"
        assert mail["auth_password_file"] == "/etc/obsportal/smtp-password"
    if "notify_webhook_url" in notify:
        assert by_name["chat"]["matchers"] == ['severity=~"critical|page|warning"']
    if not notify:
        assert set(by_name) == {"portal"}


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({"PORTAL_NOTIFY_SMTP": "mailhost"}, "PORTAL_NOTIFY_SMTP: 'mailhost' is not HOST:PORT"),
        ({"PORTAL_NOTIFY_EMAIL_TO": "ops"}, "PORTAL_NOTIFY_EMAIL_TO: 'ops' is not a mail address"),
        ({"PORTAL_NOTIFY_GROUP_WAIT": "5 minutes"}, "PORTAL_NOTIFY_GROUP_WAIT: '5 minutes' is not"),
        ({"PORTAL_NOTIFY_REPEAT_INTERVAL": "0s"}, "PORTAL_NOTIFY_REPEAT_INTERVAL: '0s' must be"),
        ({"PORTAL_NOTIFY_SMTP_TLS": "maybe"}, "PORTAL_NOTIFY_SMTP_TLS: 'maybe' is not true or"),
        ({"PORTAL_NOTIFY_WEBHOOK_URL": "ftp://x/y"}, "PORTAL_NOTIFY_WEBHOOK_URL: malformed URL"),
        ({"PORTAL_NOTIFY_EMAIL_SEVERITIES": "page;x"}, "PORTAL_NOTIFY_EMAIL_SEVERITIES: 'page;x'"),
        (
            {"PORTAL_NOTIFY_SMTP": "mail:25", "PORTAL_NOTIFY_EMAIL_TO": "ops@example.org"},
            "PORTAL_NOTIFY_EMAIL_FROM: needed when PORTAL_NOTIFY_SMTP is set",
        ),
        (
            {"PORTAL_NOTIFY_SMTP": "mail:25", "PORTAL_NOTIFY_EMAIL_FROM": "p@example.org"},
            "PORTAL_NOTIFY_EMAIL_TO: needed when PORTAL_NOTIFY_SMTP is set",
        ),
        (
            {"PORTAL_NOTIFY_SMTP_USER": "portal"},
            "PORTAL_NOTIFY_SMTP_PASSWORD_FILE: needed when PORTAL_NOTIFY_SMTP_USER is set",
        ),
    ],
)
def test_bad_notify_settings_are_one_line_errors(env: dict[str, str], expect: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(env)
    assert str(err.value).startswith(expect)
    assert "\n" not in str(err.value)


def test_bad_notify_setting_through_the_cli_is_one_line_exit_2() -> None:
    result = run_portal("settings", "show", env={"PORTAL_NOTIFY_SMTP": "mail:25"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: PORTAL_NOTIFY_EMAIL_FROM: needed when PORTAL_NOTIFY_SMTP is set"
    )


# -- runbooks -----------------------------------------------------------------------------------
def test_every_rule_runbook_link_has_an_anchor_on_the_served_page() -> None:
    served = runbooks.to_html(runbooks.source().read_text())
    assert runbooks.source().read_text() == (REPO / "docs" / "runbooks.md").read_text()
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                link = runbooks.link(rule["annotations"]["runbook_url"], "http://portal:8050")
                assert link.startswith("http://portal:8050/runbooks#"), link
                assert f'id="{link.partition("#")[2]}"' in served, rule["alert"]


def test_runbook_links_follow_the_base_url_and_keep_absolute_ones() -> None:
    assert runbooks.link("docs/runbooks.md#hostdown", "http://p:1", "https://wiki/rb") == (
        "https://wiki/rb#hostdown"
    )
    assert runbooks.link("https://elsewhere/x#y", "http://p:1") == "https://elsewhere/x#y"
    assert runbooks.link("", "http://p:1") == ""


def test_runbooks_markdown_is_escaped() -> None:
    out = runbooks.to_html("## A <b>\n**Means:** `x<y` and <script>\n")
    assert '<h2 id="a-b">A &lt;b&gt;</h2>' in out
    assert "<strong>Means:</strong> <code>x&lt;y</code> and &lt;script&gt;" in out


# -- end to end ---------------------------------------------------------------------------------
class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        body = envelope.content.decode("utf-8", errors="replace")
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), body))
        return "250 OK"


class _Hooks(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def delivered(cfg: Settings, database_url: str) -> Iterator[dict[str, Any]]:
    """A page-severity rule fired through real Prometheus and Alertmanager to mail, the chat
    webhook and the portal; everything stopped at the end (processes by PID)."""
    tmp = shared_tmpdir("obsportal-notify-")
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    hooks = _Hooks(("127.0.0.1", free_port()), _HookHandler)
    hooks.received = []
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    app_cfg = cfg.replace(
        web_bind=f"127.0.0.1:{free_port()}",
        notify_smtp=f"127.0.0.1:{smtp.port}",
        notify_email_from="portal@obs.example.org",
        notify_email_to=("oncall@obs.example.org", "ops@obs.example.org"),
        notify_smtp_tls=False,
        notify_webhook_url=f"http://127.0.0.1:{hooks.server_address[1]}/hooks/chat",
        notify_group_wait="1s",
    )
    from portal.web.app import create_app

    bootstrap.register_alertmanager_token(app_cfg)
    web = make_server("127.0.0.1", app_cfg.web_port, create_app(app_cfg), threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    rule = {
        "alert": ALERT,
        "expr": 'label_replace(vector(1), "host", "nh-host", "", "")',
        "for": "0s",
        "labels": {"severity": "page", "component": "nh-comp"},
        "annotations": {"summary": SUMMARY, "runbook_url": "docs/runbooks.md#realtimelagging"},
    }
    am_conf = configs.write(tmp / "alertmanager.yml", configs.alertmanager_config(app_cfg))
    checked = amtool_check(am_conf)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    before = events.last_id(database_url)
    alerting: Alerting | None = None

    def recorded() -> list[Any]:
        got = events.history(database_url, ["alert"], since=before)
        return [e for e in got if e.payload["alertname"] == ALERT]

    try:
        alerting = start_alerting(tmp, rule, am_conf)
        everything = lambda: mailbox.messages and hooks.received and recorded()  # noqa: E731
        assert process.wait_until(everything, 90, interval=0.5), (
            f"mails {len(mailbox.messages)}, hooks {len(hooks.received)}, "
            f"events {len(recorded())}\n{process.tail(tmp / 'alertmanager.log', 20)}"
        )
        yield {
            "mails": mailbox.messages,
            "hooks": hooks.received,
            "events": recorded(),
            "am_url": alerting.am_url,
            "tmp": tmp,
        }
    finally:
        for pid in alerting.pids if alerting else []:
            assert process.stop(pid, timeout=15)
        web.shutdown()
        hooks.shutdown()
        hooks.server_close()
        smtp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_firing_rule_mails_people_posts_to_chat_and_is_recorded(
    delivered: dict[str, Any],
) -> None:
    sender, recipients, mail = delivered["mails"][0]
    assert sender == "portal@obs.example.org"
    assert sorted(recipients) == ["oncall@obs.example.org", "ops@obs.example.org"]
    subject = " ".join(str(email.message_from_string(mail)["Subject"]).split())
    assert subject.startswith("[FIRING:1] " + ALERT), subject
    hook = delivered["hooks"][0]
    assert hook["path"] == "/hooks/chat"
    (attachment,) = hook["body"]["attachments"]
    assert attachment["title"] == f"FIRING: {ALERT}"
    assert f"[page] {SUMMARY} (nh-host)" in attachment["text"]
    ev = delivered["events"][0]
    assert ev.payload["status"] == "firing"
    assert ev.payload["labels"]["severity"] == "page"
    assert ev.source == "alertmanager:portal"


@pytest.fixture(scope="module")
def silenced(delivered: dict[str, Any]) -> dict[str, Any]:
    """A silence set in the real Alertmanager for the alert, by ``alice`` for two hours."""
    ends = datetime.now(UTC) + timedelta(hours=2)
    body = {
        "matchers": [{"name": "alertname", "value": ALERT, "isRegex": False, "isEqual": True}],
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": ends.isoformat(),
        "createdBy": "alice",
        "comment": "maintenance",
    }
    resp = httpx.post(f"{delivered['am_url']}/api/v2/silences", json=body, timeout=10)
    resp.raise_for_status()
    return {**delivered, "until": f"{ends:%Y-%m-%d %H:%M}"}


def test_alerts_list_shows_severity_since_and_silence(
    silenced: dict[str, Any], database_url: str
) -> None:
    env = {"PORTAL_ALERTMANAGER_URL": silenced["am_url"]}
    out = run_portal("alerts", "list", "--host", "nh-host", env=env, check=True).stdout
    (line,) = out.splitlines()
    assert line.startswith("firing   page ")
    assert SUMMARY in line and "nh-host" in line
    starts = latest(database_url, host="nh-host")[0].starts_at
    assert f"{datetime.fromisoformat(starts.replace('Z', '+00:00')):%Y-%m-%d %H:%M:%S}" in line
    assert f"[silenced: by alice until {silenced['until']}" in line
    assert "(maintenance)]" in line
    out = run_portal("alerts", "list", "--severity", "warning", "--host", "nh-host", env=env)
    assert out.stdout.strip() == "no firing alerts"
    rows = run_portal("alerts", "list", "--all", "--json", "--component", "nh-comp", env=env)
    (record,) = [json.loads(x) for x in rows.stdout.splitlines()]
    assert record["alertname"] == ALERT
    assert record["runbook"].endswith("/runbooks#realtimelagging")
    assert record["silenced"].startswith("by alice until")
    dead = run_portal(
        "alerts", "list", "--host", "nh-host", env={"PORTAL_ALERTMANAGER_URL": "http://127.0.0.1:1"}
    )
    assert dead.returncode == 0
    assert "unknown (Alertmanager unavailable)" in dead.stdout
    assert dead.stderr.startswith("warning: Alertmanager unavailable")


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium")
def test_alerts_page_with_prometheus_down_links_to_the_runbook_section(
    silenced: dict[str, Any], database_url: str
) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser import Browser, PortalProcess

    tmp = shared_tmpdir("portal-alerts-page-")
    dead = socket.socket()  # bound, never listening: no other process can answer on its port
    dead.bind(("127.0.0.1", 0))
    env = {
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{dead.getsockname()[1]}",
        "PORTAL_ALERTMANAGER_URL": silenced["am_url"],
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_DATA_DIR": str(tmp / "var"),
    }
    try:
        with PortalProcess(env, tmp / "web.log") as portal, Browser() as browser:
            assert (
                httpx.get(f"{portal.url}/healthz").json()["backends"]["prometheus"]["ok"] is False
            )
            browser.driver.get(f"{portal.url}/alerts?range=1h&host=nh-host")
            browser.wait_rendered()
            row = browser.wait(
                lambda: browser.driver.find_element(
                    By.CSS_SELECTOR, "#alerts-table tr.alerts-firing"
                ),
                what="the firing alert's row",
            )
            text = row.text
            assert ALERT in text and SUMMARY in text and "page" in text and "nh-comp" in text
            assert f"by alice until {silenced['until']}" in text
            assert browser.js("return document.querySelectorAll('.portal-notice').length") == 0
            assert browser.console_errors() == []
            (Path(REPO) / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
            browser.driver.save_screenshot(str(REPO / "docs" / "screenshots" / "alerts.png"))
            link = row.find_element(By.CSS_SELECTOR, "a.alerts-runbook")
            runbook = f"{portal.url}/runbooks#realtimelagging"
            assert link.get_attribute("href") == runbook  # absolute
            link.click()
            browser.wait(lambda: browser.driver.current_url == runbook, what="the runbook page")
            section = browser.wait(
                lambda: browser.driver.find_element(By.CSS_SELECTOR, "h2#realtimelagging:target"),
                what="the RealtimeLagging section as the page's target",
            )
            assert section.text == "RealtimeLagging"
            assert browser.js("return window.scrollY") > 0  # scrolled down to the section
            top = browser.js("return arguments[0].getBoundingClientRect().top", section)
            assert -1 <= top < browser.js("return window.innerHeight") / 2
            assert "behind real time for 5" in browser.page_text()

            browser.driver.get(f"{portal.url}/alerts?range=1h&host=nh-host&severity=warning")
            browser.wait_rendered()
            browser.wait(
                lambda: browser.driver.find_element(By.ID, "alerts-table").text == "no alerts",
                what="the severity filter",
            )
        dead_am = {
            **env,
            "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
            "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        }
        with PortalProcess(dead_am, tmp / "web2.log") as portal, Browser() as browser:
            browser.driver.get(f"{portal.url}/alerts?range=1h&host=nh-host")
            browser.wait_rendered()
            row = browser.wait(
                lambda: browser.driver.find_element(
                    By.CSS_SELECTOR, "#alerts-table tr.alerts-firing"
                ),
                what="the firing alert's row without Alertmanager",
            )
            assert "unknown (Alertmanager unavailable)" in row.text
            notice = browser.driver.find_element(By.CSS_SELECTOR, ".portal-notice").text
            assert notice.startswith("Alertmanager unavailable: ")
    finally:
        dead.close()
        shutil.rmtree(tmp, ignore_errors=True)


# -- what the page and `portal alerts list` read -------------------------------------------------
def _notify(url: str, fingerprint: str, status: str, **labels: str) -> None:
    events.publish(
        url,
        "alert",
        {
            "status": status,
            "alertname": "QueryCheck",
            "labels": {"alertname": "QueryCheck", **labels},
            "annotations": {"summary": f"query check {fingerprint}"},
            "startsAt": "2026-12-01T06:00:00Z",
            "endsAt": "2026-12-01T06:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
            "generatorURL": "",
        },
        source="alertmanager:portal",
    )


def test_latest_keeps_firing_and_recently_resolved_and_filters_by_label(
    database_url: str,
) -> None:
    _notify(database_url, "qc-1", "firing", severity="page", host="qc-a", component="l1")
    _notify(database_url, "qc-2", "firing", severity="warning", host="qc-a")
    _notify(database_url, "qc-2", "resolved", severity="warning", host="qc-a")
    _notify(database_url, "qc-3", "firing", severity="warning", host="qc-b")
    now = datetime.now(UTC)

    def names(**kw: Any) -> list[str]:
        return [a.fingerprint for a in latest(database_url, **kw) if a.alertname == "QueryCheck"]

    assert names() == ["qc-3", "qc-1"]  # firing only, newest first
    recent = now - timedelta(minutes=5)
    assert names(firing_only=False, resolved_since=recent) == ["qc-3", "qc-2", "qc-1"]
    later = now + timedelta(minutes=5)  # resolved before the range: left out, firing stays
    assert names(firing_only=False, resolved_since=later) == ["qc-3", "qc-1"]
    assert names(severity="warning") == ["qc-3"]
    assert names(host="qc-a") == ["qc-1"]
    assert names(component="l1", severity="page") == ["qc-1"]
    (resolved,) = [a for a in latest(database_url, firing_only=False) if a.fingerprint == "qc-2"]
    assert resolved.resolved_at == "2026-12-01T06:30:00Z"
    assert resolved.severity == "warning" and resolved.host == "qc-a"
