"""Input controls from a page's ``layout`` signature, kept in the URL.

``def layout(time_range, beam: int = 0, log_scale: bool = False, mode: Literal["a", "b"] = "a")``
gets a number input, a checkbox and a dropdown above the page, labelled with the parameter
names and showing the values the URL carries. Changing one rewrites the URL query string (the
time-range keys and other parameters stay) through one app-level callback, ``to_url``; Dash
pages' routing then calls ``layout`` again. ``time_range`` and ``**params`` are not controls.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from dash import ctx, dcc, html, no_update

from portal.auth.roles import requires
from portal.errors import PortalError
from portal.timeparse import parse_time

PARAM = "portal-param"  # pattern-matching id type of the controls
KINDS = {int: "int", float: "float", bool: "bool", str: "str", datetime: "datetime"}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Param:
    """One control: the parameter's name, kind, default and (for ``Literal``) its choices."""

    name: str
    kind: str  # int | float | bool | str | datetime | choice
    default: Any
    choices: tuple[Any, ...] = ()


def _unwrap(kind: Any) -> Any:
    """``X | None`` / ``Optional[X]`` -> ``X``."""
    args = typing.get_args(kind)
    if args and type(None) in args and typing.get_origin(kind) is not Literal:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def hints_of(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to raw strings
        return {}


def params_of(fn: Callable[..., Any]) -> list[Param]:
    """The parameters of ``fn`` that become controls, in signature order."""
    hints = hints_of(fn)
    found = []
    for p in inspect.signature(fn).parameters.values():
        if p.name == "time_range" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = None if p.default is p.empty else p.default
        kind = _unwrap(hints.get(p.name, p.empty))
        if kind is p.empty and default is not None:
            kind = type(default)  # unannotated: the default's type
        if typing.get_origin(kind) is Literal:
            found.append(Param(p.name, "choice", default, typing.get_args(kind)))
        elif kind in KINDS:
            found.append(Param(p.name, KINDS[kind], default))
    return found


def coerce(name: str, raw: Any, kind: Any) -> Any:
    """A URL string as the type ``layout`` annotated (int, float, bool, datetime, str, Literal)."""
    if kind in (inspect.Parameter.empty, Any, str) or not isinstance(raw, str):
        return raw
    kind = _unwrap(kind)
    if typing.get_origin(kind) is Literal:
        for choice in typing.get_args(kind):
            if str(choice) == raw:
                return choice
        shown = ", ".join(map(str, typing.get_args(kind)))
        raise PortalError(f"URL parameter {name}={raw!r} is not one of {shown}")
    try:
        if kind is bool:
            if raw.lower() in TRUE:
                return True
            if raw.lower() in FALSE:
                return False
            raise ValueError(raw)
        if kind is datetime:
            return parse_time(raw, name)
        if kind in (int, float):
            return kind(raw)
    except (ValueError, PortalError):
        label = getattr(kind, "__name__", str(kind))
        raise PortalError(f"URL parameter {name}={raw!r} is not a valid {label}") from None
    return raw


def current(fn: Callable[..., Any], query: dict[str, Any]) -> dict[str, Any]:
    """Each control's value: from the URL when valid there, else the default."""
    hints = hints_of(fn)
    values = {}
    for p in params_of(fn):
        value = p.default
        if p.name in query:
            # a bad URL value: the page body shows the notice, the control the default
            with contextlib.suppress(PortalError):
                value = coerce(p.name, query[p.name], hints.get(p.name, type(p.default)))
        values[p.name] = value
    return values


def _control(p: Param, value: Any) -> Any:
    cid = {"type": PARAM, "name": p.name, "kind": p.kind}
    if p.kind == "bool":
        return dcc.Checklist(
            id=cid, options=[{"label": "", "value": "on"}], value=["on"] if value else []
        )
    if p.kind == "choice":
        return dcc.Dropdown(
            id=cid,
            options=[{"label": str(c), "value": str(c)} for c in p.choices],
            value=None if value is None else str(value),
            clearable=False,
            style={"minWidth": "8em"},
        )
    if p.kind in ("int", "float"):
        return dcc.Input(
            id=cid,
            type="number",
            value=value,
            step=1 if p.kind == "int" else "any",
            debounce=True,
            style={"width": "7em"},
        )
    if p.kind == "datetime" and isinstance(value, datetime):
        value = value.strftime("%Y-%m-%dT%H:%M")
    return dcc.Input(
        id=cid,
        type="text",
        value=value or "",
        debounce=True,
        placeholder="2026-03-01T12:00" if p.kind == "datetime" else "",
        style={"width": "12em"},
    )


def controls(fn: Callable[..., Any], query: dict[str, Any]) -> html.Div | None:
    """The row of controls for ``fn``'s parameters (None when it has none)."""
    values = current(fn, query)
    found = params_of(fn)
    if not found:
        return None
    return html.Div(
        [
            html.Label(
                [html.Span(p.name.replace("_", " ")), _control(p, values[p.name])],
                className="portal-control",
            )
            for p in found
        ],
        className="portal-controls",
    )


def as_text(kind: str, value: Any) -> str | None:
    """A control's value as it goes into the URL (None: drop the key, back to the default)."""
    if kind == "bool":
        return "true" if value else "false"
    if value is None or value == "":
        return None
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@requires("viewer")
def to_url(_values: list[Any], search: str | None) -> Any:
    """The app-level callback: a control changed -> its value into the URL query string."""
    changed = ctx.triggered_id
    if not isinstance(changed, dict) or changed.get("type") != PARAM:
        return no_update
    value = next((i.get("value") for i in ctx.inputs_list[0] if i["id"] == changed), None)
    pairs = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    text = as_text(changed["kind"], value)
    if text is None:
        pairs.pop(changed["name"], None)
    else:
        pairs[changed["name"]] = text
    new = "?" + urlencode(pairs) if pairs else ""
    return no_update if new == (search or "") else new
