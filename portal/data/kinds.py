"""Product kinds: the built-in ones and those plugins declare (``register_product_kinds``)."""

from __future__ import annotations

from portal.hookspecs import ProductKind
from portal.settings import Settings

BUILTIN = (
    ProductKind("l1", "L1 intensity chunk: one beam, one stretch of time", "short"),
    ProductKind("rfi", "RFI mask of an L1 chunk", "short"),
    ProductKind("hhat_daily", "Hhat daily stack of one sky position", "standard"),
    ProductKind("hhat_monthly", "Hhat monthly stack of one sky position", "archive"),
    ProductKind("hhat_cumulative", "Hhat cumulative stack of one sky position", "archive"),
)


def all_kinds(cfg: Settings | None = None) -> dict[str, ProductKind]:
    """Every kind by name: built-ins first; a plugin may not redefine one."""
    from portal import plugins

    found = {k.name: k for k in BUILTIN}
    manager = plugins.get(cfg) if cfg is not None else plugins.manager(None)
    for kind in manager.results("register_product_kinds"):
        if isinstance(kind, ProductKind) and kind.name not in found:
            found[kind.name] = kind
    return found
