"""The header corner showing who is logged in, with their role and a logout button."""

from __future__ import annotations

from dash import dcc, html
from dash.development.base_component import Component

from portal import routes

# one strip above the header, in its colours (inline: this capability ships no stylesheet)
BAR_STYLE = {
    "display": "flex",
    "justifyContent": "flex-end",
    "alignItems": "center",
    "gap": ".8em",
    "padding": ".25em 1em",
    "background": "#2c3446",
    "color": "#fff",
    "fontSize": ".85em",
}
LINK_STYLE = {"color": "#cfe0ff"}


def user_bar() -> html.Div:
    """``alice (operator) [Log out]``; anonymous visitors get a login link."""
    who = routes.identity()
    if who.kind == "anonymous":
        body: list[Component] = [
            html.Span(f"anonymous ({who.role or 'no access'})", id="portal-user"),
            dcc.Link(
                "Log in", href="/login", id="portal-login-link", refresh=True, style=LINK_STYLE
            ),
        ]
    else:
        body = [
            html.Span(f"{who.actor} ({who.role})", id="portal-user"),
            html.Form(
                html.Button("Log out", type="submit", id="portal-logout"),
                action="/logout",
                method="POST",
                style={"display": "inline"},
            ),
        ]
    return html.Div(body, className="portal-user-bar", style=BAR_STYLE)
