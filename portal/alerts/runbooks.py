"""The runbooks (docs/runbooks.md, shipped as package data): served at ``/runbooks`` with one
anchor per heading, and the absolute link of an alert's ``runbook_url`` annotation.

The rules' ``runbook_url`` is ``docs/runbooks.md#<anchor>`` (readable in the repository);
``link`` turns it into ``<PORTAL_RUNBOOK_BASE_URL>#<anchor>``, or the portal's own
``<portal>/runbooks#<anchor>`` when that setting is empty.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from portal.resources import shipped

PATH = "/runbooks"
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\((https?://[^)\s]+)\)")


def source() -> Path:
    return shipped("runbooks.md")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading (what ``runbook_url`` fragments name)."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {anchor(h) for h in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)}


def link(runbook_url: str, portal_url: str, base_url: str = "") -> str:
    """The absolute link of a ``runbook_url`` annotation; empty when the alert has none.

    An absolute annotation (``http(s)://...``) is kept; otherwise its ``#fragment`` is appended
    to ``base_url``, or to the portal's ``/runbooks`` page at ``portal_url`` when it is empty.
    """
    if not runbook_url:
        return ""
    if runbook_url.startswith(("http://", "https://")):
        return runbook_url
    fragment = runbook_url.partition("#")[2]
    base = base_url or portal_url.rstrip("/") + PATH
    return f"{base}#{fragment}" if fragment else base


def _inline(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        code, bold, label, href = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(href)}">{html.escape(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def to_html(markdown: str) -> str:
    """The runbooks' Markdown (headings, paragraphs, bold, code, links) as HTML; every heading
    gets its GitHub anchor as ``id``. Everything else is escaped."""
    parts: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            parts.append("<p>" + "".join(para) + "</p>")
            para.clear()

    for line in markdown.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.+?)\s*$", line)
        if heading:
            flush()
            level, text = len(heading.group(1)), heading.group(2)
            parts.append(f'<h{level} id="{anchor(text)}">{_inline(text)}</h{level}>')
        elif not line.strip():
            flush()
        else:
            if para and line.startswith("**"):
                para.append("<br>")  # "**Check:** ..." lines start a new line
            para.append(_inline(line) + " ")
    flush()
    return "\n".join(parts)


def page(markdown: str) -> str:
    """The whole ``/runbooks`` page."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Runbooks - obsportal</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;"
        "line-height:1.45}code{background:#eee;padding:0 .2em}"
        ":target{background:#fff3c4}h2{margin-top:2em}</style></head><body>"
        '<p><a href="/alerts">Alerts</a> | <a href="/">Overview</a></p>'
        f"{to_html(markdown)}</body></html>"
    )
