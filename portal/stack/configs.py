"""Generated configuration for the local Prometheus and Alertmanager.

Scrape targets of collectors come from file_sd JSON under ``<data>/prometheus/targets``
(written from the inventory by ``portal.metrics.targets``), so adding a host needs no restart.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from portal import plugins
from portal.alerts.payload import MAX_ALERTS
from portal.auth.bootstrap import alertmanager_token_file
from portal.settings import Settings


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def targets_dir(cfg: Settings) -> Path:
    return cfg.data_dir / "prometheus" / "targets"


def remote_write(cfg: Settings) -> list[dict]:
    """Where Prometheus forwards its samples (``PORTAL_PROMETHEUS_REMOTE_WRITE_URL``): a
    long-term store several Prometheus servers can share; empty list when none is set."""
    if not cfg.prometheus_remote_write_url:
        return []
    return [{"url": cfg.prometheus_remote_write_url, "queue_config": {"batch_send_deadline": "5s"}}]


def prometheus_config(cfg: Settings, scrape_interval: str = "10s") -> dict:
    targets = targets_dir(cfg)
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": scrape_interval,
            "external_labels": {"portal": "obsportal"},
        },
        # every plugin's rule files (prometheus_rule_files): the alerts capability ships ours
        "rule_files": [str(p) for p in plugins.get(cfg).results("prometheus_rule_files")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [hostport(cfg.alertmanager_url)]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [hostport(cfg.prometheus_url)]}],
            },
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [hostport(cfg.pushgateway_url)]}],
            },
            {
                "job_name": "alertmanager",
                "static_configs": [{"targets": [hostport(cfg.alertmanager_url)]}],
            },
            {"job_name": "portal", "static_configs": [{"targets": [hostport(cfg.web_url)]}]},
            {
                # the samples keep the labels they were exposed with (no exported_host) and lose
                # the target's instance, role and declared_state: one series per host and metric,
                # the same label set the backfill writes (portal/demo/backfill.py), whatever the
                # collector's port or the host's role and state; `up` keeps all target labels
                "job_name": "collectors",
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets / "*.json")], "refresh_interval": "5s"}],
                "metric_relabel_configs": [
                    {"action": "labeldrop", "regex": "instance|role|declared_state"}
                ],
            },
        ],
    }
    if cfg.prometheus_remote_write_url:
        config["remote_write"] = remote_write(cfg)
    return config


def _severity_matcher(severities: tuple[str, ...]) -> str:
    return "severity=~" + '"' + "|".join(severities) + '"'


def alertmanager_config(cfg: Settings) -> dict:
    """Every alert goes to the portal's webhook (its own route, ``continue: true``); people are
    told by mail and/or a Slack/Mattermost-compatible webhook, chosen by the ``severity`` label
    (``PORTAL_NOTIFY_*``), with their own grouping and repeat intervals."""
    portal = {
        "name": "portal",
        "webhook_configs": [
            {
                "url": f"{cfg.web_url}/api/alerts",
                "send_resolved": True,
                "max_alerts": MAX_ALERTS,  # the portal refuses larger notifications
                # the webhook needs a token (portal.auth.bootstrap registers this one)
                "http_config": {
                    "authorization": {
                        "type": "Bearer",
                        "credentials_file": str(alertmanager_token_file(cfg)),
                    }
                },
            }
        ],
    }
    receivers: list[dict] = [portal]
    routes: list[dict] = [{"receiver": "portal", "continue": True}]
    people = {
        "group_wait": cfg.notify_group_wait,
        "group_interval": cfg.notify_group_interval,
        "repeat_interval": cfg.notify_repeat_interval,
        "continue": True,
    }
    if cfg.notify_smtp and cfg.notify_email_severities:
        mail: dict = {
            "to": ", ".join(cfg.notify_email_to),
            "from": cfg.notify_email_from,
            "smarthost": cfg.notify_smtp,
            "require_tls": cfg.notify_smtp_tls,
            "send_resolved": True,
        }
        if cfg.notify_smtp_user:
            mail["auth_username"] = cfg.notify_smtp_user
            mail["auth_password_file"] = str(cfg.notify_smtp_password_file)
        receivers.append({"name": "email", "email_configs": [mail]})
        routes.append(
            {
                "receiver": "email",
                "matchers": [_severity_matcher(cfg.notify_email_severities)],
                **people,
            }
        )
    if cfg.notify_webhook_url and cfg.notify_webhook_severities:
        chat = {
            "api_url": cfg.notify_webhook_url,
            "send_resolved": True,
            "title": "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}",
            "text": (
                "{{ range .Alerts }}[{{ .Labels.severity }}] {{ .Annotations.summary }}"
                " ({{ .Labels.host }})\n{{ end }}"
            ),
        }
        receivers.append({"name": "chat", "slack_configs": [chat]})
        routes.append(
            {
                "receiver": "chat",
                "matchers": [_severity_matcher(cfg.notify_webhook_severities)],
                **people,
            }
        )
    return {
        "route": {
            "receiver": "portal",
            "group_by": ["alertname", "host"],
            "group_wait": "5s",
            "group_interval": "1m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
    }


def render(config: dict) -> str:
    header = "# generated by `portal stack up`; edit portal/stack/configs.py instead\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def write(path: Path, config: dict) -> Path:
    """Write a generated config atomically."""
    update(path, config)
    return path


def update(path: Path, config: dict) -> bool:
    """Write a generated config; True when its content changed (so a reload is worth it)."""
    text = render(config)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def prometheus_path(cfg: Settings) -> Path:
    return cfg.data_dir / "prometheus" / "prometheus.yml"


def alertmanager_path(cfg: Settings) -> Path:
    return cfg.data_dir / "alertmanager" / "alertmanager.yml"


def refresh(cfg: Settings) -> dict[str, bool]:
    """Regenerate both configs from the current settings; which ones changed."""
    targets_dir(cfg).mkdir(parents=True, exist_ok=True)
    return {
        "prometheus": update(prometheus_path(cfg), prometheus_config(cfg)),
        "alertmanager": update(alertmanager_path(cfg), alertmanager_config(cfg)),
    }
