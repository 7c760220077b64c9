"""Operations: the fleet (state, maintenance, drain, components and versions), acting on hosts
with the dry run shown before anything dangerous, a run's live steps, and the history.

Acting goes through ``portal.ops.runs.request`` as ``portal ops`` and ``/api/ops`` do (same
validation, audit, worker); the callbacks that request runs declare ``operator`` (a viewer's
click is refused with 403 before any code runs), and the action's own role is checked again.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from dash import ALL, Input, Output, State, callback, ctx, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth.roles import at_least, requires
from portal.errors import PortalError
from portal.web import ui

TITLE = "Operations"
PATH = "/operations"
ORDER = 22  # after Hosts (20)
CONTROLS = False  # its own inputs
TICK_MS = 1000  # the run view
LISTS_MS = 5000  # fleet and history
HISTORY = 30
CHOICES = re.compile(r"^\(([A-Za-z0-9|-]*)\)$")  # "(on|off)", "(|yes|no)": a drop-down
HIDDEN = {"display": "none"}
DIALOG = {
    "display": "block",
    "position": "fixed",
    "top": "10%",
    "left": "15%",
    "width": "70%",
    "maxHeight": "75%",
    "overflow": "auto",
    "background": "white",
    "border": "2px solid #b33",
    "borderRadius": "6px",
    "padding": "1em",
    "zIndex": 1000,
    "boxShadow": "0 0 0 100vmax rgba(0, 0, 0, .3)",
}


def _cfg() -> Any:
    return routes.settings()


# -- the fleet table -------------------------------------------------------------------------------
def fleet_frame() -> pd.DataFrame:
    """One row per host: role, state, maintenance, drain, the run holding it, components."""
    from portal.inventory import liveness, registry
    from portal.ops import status

    cfg = _cfg()
    report = status.report(cfg)
    try:
        live = {h.name: h.state for h in liveness.host_states(cfg).hosts}
    except PortalError:
        live = {}
    versions = {
        (c.host, c.name): str((c.labels or {}).get("version") or "")
        for c in registry.list_components(cfg)
    }
    rows = []
    for h in report["hosts"]:
        m, d = h["maintenance"], h["drained"]
        comps = [
            f"{c['name']} {versions.get((h['host'], c['name'])) or ''}".strip()
            for c in h["components"]
        ]
        rows.append(
            {
                "host": h["host"],
                "role": h["role"],
                "state": live.get(h["host"], h["state"]),
                "maintenance": f"{m['by']} until {m['until'][:16]}: {m['why']}" if m else "",
                "drained": f"{d['by']}: {d['why']}" if d else "",
                "busy": f"run {h['locked_by_run']}" if h["locked_by_run"] else "",
                "components": ", ".join(comps),
                "act": h["host"],
            }
        )
    return pd.DataFrame(rows)


def fleet_table() -> Any:
    try:
        df = fleet_frame()
    except PortalError as err:
        return ql.unavailable(err)
    return ui.table(
        df,
        "ops-fleet-table",
        links={"act": lambda h: f"{PATH}?host={h}"},
        link_text={"act": "act…"},
        empty="no hosts in the inventory (portal hosts add)",
    )


# -- the action form -------------------------------------------------------------------------------
def _actions() -> dict[str, Any]:
    from portal.ops import runs

    return runs.actions(_cfg())


def param_inputs(action: str | None) -> list[Any]:
    """One input per parameter of ``action``: a drop-down for ``(a|b)`` patterns."""
    found = _actions().get(action or "")
    if found is None:
        return []
    parts: list[Any] = []
    for name, pattern in found.params.items():
        ident = {"type": "ops-param", "name": name}
        choices = CHOICES.match(pattern)
        if choices:
            options = [{"label": c or "(default)", "value": c} for c in choices[1].split("|")]
            field: Any = dcc.Dropdown(
                id=ident, options=options, value=options[0]["value"], clearable=False
            )
        else:
            field = dcc.Input(id=ident, placeholder=pattern, debounce=False)
        parts.append(
            html.Label(
                [html.Span(name, style={"marginRight": ".5em"}), field],
                style={"display": "inline-block", "minWidth": "12em", "marginRight": "1em"},
            )
        )
    return parts


def layout(host: str = "", run: int = 0, **params: Any) -> html.Div:
    from portal.inventory import registry

    try:
        names = [h.name for h in registry.list_hosts(_cfg())]
        actions = sorted(_actions().values(), key=lambda a: a.name)
    except PortalError as err:
        return html.Div([ql.unavailable(err)])
    who = routes.identity()
    note = (
        None
        if at_least(who.role, "operator")
        else html.P(
            f"You are {who.role or 'not logged in'}: starting actions needs role operator.",
            id="ops-role-note",
        )
    )
    form = html.Div(
        [
            dcc.Dropdown(
                id="ops-hosts",
                options=[{"label": n, "value": n} for n in names],
                value=[host] if host in names else [],
                multi=True,
                placeholder="hosts",
            ),
            dcc.Dropdown(
                id="ops-action",
                options=[{"label": f"{a.name}: {a.help}", "value": a.name} for a in actions],
                placeholder="action",
            ),
            html.Div(id="ops-params", style={"margin": ".5em 0"}),
            dcc.Input(
                id="ops-reason",
                placeholder="reason (required: who asked, which ticket, why)",
                style={"width": "40em", "marginRight": "1em"},
            ),
            html.Button("Start…", id="ops-start", n_clicks=0),
            html.Div(id="ops-message", style={"margin": ".5em 0"}),
        ],
        className="portal-ops-form",
    )
    dialog = html.Div(
        [
            html.H3("Confirm: this is what will run"),
            html.Div(id="ops-confirm-body"),
            html.Button("Run it", id="ops-confirm-go", n_clicks=0, style={"marginRight": "1em"}),
            html.Button("Cancel", id="ops-confirm-cancel", n_clicks=0),
        ],
        id="ops-confirm",
        style=HIDDEN,
    )
    return html.Div(
        [
            note,
            html.Div(fleet_table(), id="ops-fleet"),
            html.H3("Act"),
            form,
            dialog,
            dcc.Store(id="ops-pending"),
            dcc.Store(id="ops-run", data=run or None),
            dcc.Interval(id="ops-tick", interval=TICK_MS),
            dcc.Interval(id="ops-slow", interval=LISTS_MS),
            html.H3("Run"),
            html.Div(id="ops-run-view", children=run_view(run or None)),
            html.Button("Roll back this update…", id="ops-rollback", n_clicks=0, style=HIDDEN),
            html.H3("History"),
            html.Div(history_table(), id="ops-history"),
        ]
    )


@callback(Output("ops-params", "children"), Input("ops-action", "value"))
@requires("viewer")
def show_params(action: str | None) -> list[Any]:
    return param_inputs(action)


# -- requesting (operator) -------------------------------------------------------------------------
def _dry_run_view(run: Any) -> html.Div:
    commands = (run.result or {}).get("commands") or {}
    lines = [f"{h}: {line}" for h, found in commands.items() for line in found]
    steps = [f"[{s.seq}] {s.host or '-'} {s.name}: {s.state} {s.detail}" for s in run.steps]
    return html.Div(
        [
            html.P(f"{run.action} on {', '.join(run.hosts) or 'no hosts'}; reason: {run.reason}"),
            html.P("Commands per host:"),
            html.Pre("\n".join(lines) or "(no commands)", id="ops-confirm-commands"),
            html.P("Steps of the dry run:"),
            html.Pre("\n".join(steps) or "(no steps)"),
        ]
    )


def _request(pending: dict[str, Any], dry_run: bool) -> int:
    from portal.ops import runs

    return runs.request(
        _cfg(),
        routes.identity(),
        pending["action"],
        pending["hosts"],
        pending["params"],
        pending["reason"],
        dry_run=dry_run,
    )


def _pending_from_form(
    hosts: list[str] | None,
    action: str | None,
    values: list[Any],
    ids: list[dict[str, str]],
    reason: str | None,
) -> dict[str, Any]:
    if not action:
        raise PortalError("choose an action")
    params = {i["name"]: v for i, v in zip(ids, values, strict=False) if v not in (None, "")}
    chosen = list(hosts or [])
    if action == "recover" and not chosen:  # the whole inventory, each host locked for it
        from portal.ops.recover import default_hosts

        chosen = default_hosts(_cfg())
    return {"action": action, "hosts": chosen, "params": params, "reason": reason or ""}


def _rollback_pending(run_id: int | None, reason: str | None) -> dict[str, Any]:
    from portal.ops import rolling

    if not run_id:
        raise PortalError("no update run is shown")
    hosts = rolling.rollback_hosts(_cfg(), int(run_id))
    why = reason or f"roll back update run {run_id}"
    return {"action": "rollback", "hosts": hosts, "params": {"run": str(run_id)}, "reason": why}


@callback(
    Output("ops-confirm", "style"),
    Output("ops-confirm-body", "children"),
    Output("ops-pending", "data"),
    Output("ops-run", "data"),
    Output("ops-message", "children"),
    Input("ops-start", "n_clicks"),
    Input("ops-rollback", "n_clicks"),
    Input("ops-confirm-go", "n_clicks"),
    Input("ops-confirm-cancel", "n_clicks"),
    State("ops-hosts", "value"),
    State("ops-action", "value"),
    State({"type": "ops-param", "name": ALL}, "value"),
    State({"type": "ops-param", "name": ALL}, "id"),
    State("ops-reason", "value"),
    State("ops-pending", "data"),
    State("ops-run", "data"),
    prevent_initial_call=True,
)
@requires("operator")
def act(
    _start: int,
    _rollback: int,
    _go: int,
    _cancel: int,
    hosts: list[str] | None,
    action: str | None,
    values: list[Any],
    ids: list[dict[str, str]],
    reason: str | None,
    pending: dict[str, Any] | None,
    shown: int | None,
) -> tuple[Any, ...]:
    """Start…: a dangerous action shows its dry run to confirm, another is queued at once;
    Run it: queues the confirmed request; every refusal is one line under the form."""
    from portal.ops import runs

    trigger = ctx.triggered_id
    keep = (HIDDEN, None, None, shown)
    try:
        if trigger == "ops-confirm-cancel":
            return (*keep, "cancelled: nothing was run")
        if trigger == "ops-confirm-go":
            if not pending:
                raise PortalError("nothing to confirm")
            run_id = _request(pending, dry_run=False)
            return HIDDEN, None, None, run_id, f"run {run_id} queued"
        if trigger == "ops-rollback":
            request = _rollback_pending(shown, reason)
        else:
            request = _pending_from_form(hosts, action, values, ids, reason)
        found = runs.actions(_cfg()).get(request["action"])
        if found is not None and not found.dangerous:
            run_id = _request(request, dry_run=False)
            return HIDDEN, None, None, run_id, f"run {run_id} queued"
        dry = runs.get(_cfg(), _request(request, dry_run=True))
        if dry.state != "succeeded":
            raise PortalError(f"the dry run failed: {dry.error}")
        return DIALOG, _dry_run_view(dry), request, shown, ""
    except PortalError as exc:
        line = (str(exc).strip().splitlines() or ["refused"])[0]
        return (*keep, ql.notice(line, kind="error"))


# -- a run, live -----------------------------------------------------------------------------------
def _report(run: Any) -> Any:
    """Recovery: per tier, back / not back and how long; update: the versions saved."""
    after = (run.result or {}).get("after") or {}
    if run.action == "recover" and after.get("tiers"):
        df = pd.DataFrame(
            [
                {
                    "tier": t["tier"],
                    "back": ", ".join(t["back"]),
                    "not back": "; ".join(f"{h}: {w}" for h, w in t["not_back"].items()),
                    "seconds": t["seconds"],
                }
                for t in after["tiers"]
            ]
        )
        return ui.table(df, "ops-run-report")
    previous = run.progress.get("previous") if run.action == "update" else None
    if previous:
        df = pd.DataFrame([{"host": h, "previous version": v} for h, v in previous.items()])
        return ui.table(df, "ops-run-report")
    return None


def run_view(run_id: int | None) -> Any:
    from portal.ops import runs
    from portal.timeparse import stamp

    if not run_id:
        return html.P("Start an action, or pick a run from the history.", className="portal-empty")
    try:
        run = runs.get(_cfg(), int(run_id))
    except PortalError as err:
        return ql.unavailable(err)
    steps = pd.DataFrame(
        [
            {
                "#": s.seq,
                "host": s.host or "–",
                "step": s.name,
                "state": s.state,
                "detail": s.detail,
                "started": stamp(s.started_at)[11:19],
                "ended": stamp(s.finished_at)[11:19] if s.finished_at else "",
            }
            for s in run.steps
        ]
    )
    head = (
        f"run {run.id}: {run.action}{' (dry run)' if run.dry_run else ''} on "
        f"{', '.join(run.hosts) or 'no hosts'} by {run.actor} — {run.state}"
        + (f": {run.error}" if run.error else "")
    )
    return html.Div(
        [
            html.P(head, id="ops-run-state", **{"data-state": run.state}),  # type: ignore[arg-type]
            html.P(f"reason: {run.reason}"),
            ui.table(steps, "ops-run-steps", empty="no steps yet (waiting for the ops worker)"),
            _report(run),
        ]
    )


def _rollback_offered(run_id: int | None) -> bool:
    from portal.ops import rolling

    if not run_id:
        return False
    try:
        rolling.rollback_plan(_cfg(), int(run_id))
    except PortalError:
        return False
    return True


@callback(
    Output("ops-run-view", "children"),
    Output("ops-rollback", "style"),
    Input("ops-tick", "n_intervals"),
    Input("ops-run", "data"),
    prevent_initial_call=True,
)
@requires("viewer")
def refresh_run(_tick: int | None, run_id: int | None) -> tuple[Any, Any]:
    return run_view(run_id), ({} if _rollback_offered(run_id) else HIDDEN)


# -- history ---------------------------------------------------------------------------------------
def history_table() -> Any:
    from portal.ops import runs
    from portal.timeparse import stamp

    try:
        found = runs.history(_cfg(), HISTORY)
    except PortalError as err:
        return ql.unavailable(err)
    df = pd.DataFrame(
        [
            {
                "run": r.id,
                "time": stamp(r.created_at)[:19].replace("T", " "),
                "actor": r.actor,
                "action": r.action + (" (dry run)" if r.dry_run else ""),
                "hosts": ", ".join(r.hosts),
                "state": r.state,
                "reason": r.reason,
            }
            for r in found
        ]
    )
    return ui.table(
        df,
        "ops-history-table",
        links={"run": lambda i: f"{PATH}?run={i}"},
        empty="no actions run yet",
    )


@callback(
    Output("ops-history", "children"),
    Output("ops-fleet", "children"),
    Input("ops-slow", "n_intervals"),
    prevent_initial_call=True,
)
@requires("viewer")
def refresh_lists(tick: int | None) -> tuple[Any, Any]:
    return history_table(), fleet_table()
