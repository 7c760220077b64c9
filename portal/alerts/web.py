"""``GET /runbooks``: the runbooks as one HTML page whose headings carry the anchors the alert
rules' ``runbook_url`` fragments name (a plain page, so the browser scrolls to the section)."""

from __future__ import annotations

from flask import Blueprint, Response

from portal.alerts import runbooks
from portal.auth.roles import requires

blueprint = Blueprint("alerts_web", __name__)


@blueprint.get(runbooks.PATH)
@requires("viewer")
def runbooks_page() -> Response:
    text = runbooks.source().read_text(encoding="utf-8")
    return Response(runbooks.page(text), mimetype="text/html")
