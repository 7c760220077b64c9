"""Keeps generated sections of README.md in step with the code (``portal settings table``)."""

from __future__ import annotations

import re
from pathlib import Path

from portal.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- settings:begin -->\n).*?(\n<!-- settings:end -->)", re.S)


def render(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + markdown_table() + m.group(2), text)


def update(path: Path = README) -> bool:
    """Rewrite the settings table in place; True when it changed."""
    old = path.read_text()
    new = render(old)
    if new != old:
        path.write_text(new)
    return new != old
