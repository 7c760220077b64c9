"""Keeps generated sections of README.md in step with the code (a dev tool, not shipped).

``python -m tests.readme`` rewrites the settings table; a test fails while it is stale.
"""

from __future__ import annotations

import re
from pathlib import Path

from portal.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
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


if __name__ == "__main__":
    print("README.md updated" if update() else "README.md already current")
