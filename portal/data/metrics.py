"""The data capability's gauges, pushed to the Pushgateway by the rule evaluator: rule states,
the transfer queue, days until each site is full and ingest against the budgets (the alert
rules in ``prometheus/rules/data.yml`` read them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.data import accounting, catalog
from portal.data import settings as data_settings
from portal.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from portal.data.rules import RuleState

JOB = "portal-data"


def registry(cfg: Settings, states: list[RuleState]) -> CollectorRegistry:
    """Every gauge, computed now from the catalog and the rule states."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    stuck = Gauge(
        "portal_data_rule_stuck",
        "1 when a replication rule is STUCK (last_error: its failing files' latest error)",
        ["rule", "site", "last_error"],
        registry=reg,
    )
    missing = Gauge(
        "portal_data_rule_missing_copies",
        "Products a replication rule still lacks at its site",
        ["rule", "site"],
        registry=reg,
    )
    for s in states:
        stuck.labels(s.name, s.site, (s.last_error or "")[:200]).set(int(s.state == "STUCK"))
        missing.labels(s.name, s.site).set(s.total - s.done)
    queued = Gauge(
        "portal_data_transfer_requests", "Transfer requests by state", ["state"], registry=reg
    )
    for state, n in catalog.queue_counts(cfg.database_url).items():
        queued.labels(state).set(n)
    days = Gauge(
        "portal_data_site_days_until_full",
        "Days until a site's capacity is reached at the current ingest rate",
        ["site"],
        registry=reg,
    )
    for f in accounting.forecast(cfg):
        if f.days_until_full is not None:
            days.labels(f.site).set(f.days_until_full)
    ratio = Gauge(
        "portal_data_ingest_budget_ratio",
        "Daily ingest of a product kind over its budget (PORTAL_DATA_BUDGETS)",
        ["kind"],
        registry=reg,
    )
    over = Gauge(
        "portal_data_ingest_over_budget",
        "1 when a kind's daily ingest exceeds its budget by more than PORTAL_DATA_BUDGET_TOLERANCE",
        ["kind"],
        registry=reg,
    )
    tolerance = float(data_settings.value(cfg, "PORTAL_DATA_BUDGET_TOLERANCE"))
    for b in accounting.budgets(cfg):
        if b["per_day"] and b["ratio"] is not None:
            ratio.labels(b["kind"]).set(b["ratio"])
            over.labels(b["kind"]).set(int(b["ratio"] > 1 + tolerance))
    return reg


def push(cfg: Settings, states: list[RuleState]) -> None:
    """Replace the data gauges in the Pushgateway (``OSError`` when it is unreachable)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(cfg.pushgateway_url, job=JOB, registry=registry(cfg, states), timeout=5)
