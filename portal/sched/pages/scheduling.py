"""Scheduling: Slurm capacity and the real-time share, the batch work queue, the backlog
forecast and the scheduler's last decisions with their reasons. Refreshes every 10 seconds."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from dash import Input, Output, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.timeparse import stamp
from portal.web import ui

TITLE = "Scheduling"
ORDER = 40


def layout(time_range: ql.TimeRange, **_: Any) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id="sched-tick", interval=10_000),
            html.Div(id="sched-body", children=_body()),
        ]
    )


def _plain(text: str) -> html.P:
    """A state of the setup, not a failure: no warning banner (an unreachable Slurm gets one)."""
    return html.P(text, id="sched-no-slurm", className="portal-empty")


def _capacity() -> Any:
    from portal.sched import capacity, localslurm
    from portal.sched.options import options, slurm_conf
    from portal.sched.slurm import Slurm

    cfg = routes.settings()
    opts = options(cfg)
    conf = slurm_conf(cfg)
    if conf is None and localslurm.missing() is not None:
        return _plain(
            "running without Slurm: slurm-wlm is not installed here, so nothing is submitted; "
            "the queue below still fills (apt-get install -y slurm-wlm munge, then make run)"
        )
    if conf is None and not Path("/etc/slurm/slurm.conf").exists():
        return _plain(
            "no Slurm cluster configured: set PORTAL_SCHED_SLURM_CONF to the site's slurm.conf "
            "(make run starts a local one); the queue below still fills"
        )
    slurm = Slurm(conf, timeout=5)
    nodes = slurm.nodes()
    jobs = slurm.jobs()
    share = capacity.share(slurm, nodes, jobs, opts.partition)
    needs = capacity.declared(cfg)
    over = needs.cores > share.realtime_cpus
    rows = [
        {
            "node": n.name,
            "state": n.state,
            "CPUs": n.cpus,
            "allocated": n.alloc_cpus,
            "memory MB": n.memory_mb,
            "reason": n.reason or "–",
        }
        for n in nodes
    ]
    summary = html.P(
        f"Real-time share: {share.realtime_cpus} CPUs held (components declare "
        f"{needs.cores:g} cores, {needs.memory_mb} MB). Batch: {share.batch_used_cpus} of "
        f"{share.batch_cpus} CPUs used, {share.free_batch_cpus} free"
        + (f"; drained: {', '.join(share.drained)}" if share.drained else "")
        + ".",
        id="sched-capacity",
    )
    warn = (
        ql.notice(
            "declared real-time needs exceed the real-time share (portal sched check)", "error"
        )
        if over
        else None
    )
    by = pd.DataFrame(
        [{"partition": j.partition, "state": j.state, "reason": j.reason} for j in jobs if j.active]
    )
    counts = by.value_counts().reset_index(name="jobs") if not by.empty else by
    return html.Div(
        [
            warn,
            summary,
            ui.table(pd.DataFrame(rows), "sched-nodes"),
            html.H4("Slurm jobs"),
            ui.table(counts, "sched-jobs", empty="no jobs"),
        ]
    )


def _queue() -> Any:
    from portal.sched import metrics
    from portal.sched import work as queue

    cfg = routes.settings()
    counts = queue.counts(cfg)
    df = pd.DataFrame([{"kind": k, "state": s, "items": n} for (k, s), n in counts.items()])
    if not df.empty:
        df = df.pivot_table(index="kind", columns="state", values="items", fill_value=0)
        df = df.reset_index()
    fc = metrics.forecast(cfg)
    waiting = queue.items(cfg, ("submitted", "running"), limit=50)
    rows = pd.DataFrame(
        [
            {
                k: v
                for k, v in asdict(i).items()
                if k in ("id", "kind", "key", "state", "attempts", "job_id", "slurm_reason")
            }
            for i in waiting
        ]
    )
    return html.Div(
        [
            html.P(f"Forecast: {fc.line()}.", id="sched-forecast"),
            ui.table(df, "sched-queue", empty="the work queue is empty"),
            html.H4("In Slurm now"),
            ui.table(rows, "sched-inflight", empty="no work submitted"),
        ]
    )


def _decisions() -> Any:
    from portal.sched import work as queue

    found = queue.recent_decisions(routes.settings(), 30)
    df = pd.DataFrame(
        [
            {
                "time": stamp(d.time),
                "decision": d.decision,
                "job": d.job_id or "",
                "reason": d.reason,
            }
            for d in found
        ]
    )
    return ui.table(df, "sched-decisions", empty="no decisions yet")


def _body() -> list[Any]:
    def part(make: Any) -> Any:
        try:
            return make()
        except PortalError as err:
            return ql.unavailable(err)

    return [
        html.H3("Capacity"),
        part(_capacity),
        html.H3("Backlog"),
        part(_queue),
        html.H3("Scheduler decisions"),
        part(_decisions),
    ]


@callback(
    Output("sched-body", "children"), Input("sched-tick", "n_intervals"), prevent_initial_call=True
)
@requires("viewer")
def refresh(_tick: int | None) -> list[Any]:
    """Read Slurm and the queue again."""
    return _body()
