"""Batch work on a host, asked of whichever capability runs a batch system
(``batch_work_on_host``): a drain may wait for it, a reboot refuses while any runs."""

from __future__ import annotations

from portal import plugins
from portal.errors import PortalError
from portal.settings import Settings


def running(cfg: Settings, host: str) -> list[str]:
    """One line per batch job running on ``host``; ``PortalError`` when a batch system cannot
    tell (the hook is called directly: ``results`` would record the error and answer [])."""
    try:
        answers = plugins.get(cfg).hook.batch_work_on_host(settings=cfg, host=host)
    except PortalError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug: one line, not a traceback
        raise PortalError(f"batch work on {host}: {type(exc).__name__}: {exc}") from None
    return [line for answer in answers for line in answer or []]


def describe(jobs: list[str], most: int = 5) -> str:
    """The first ``most`` jobs, and how many more."""
    shown = ", ".join(jobs[:most])
    return shown + (f" and {len(jobs) - most} more" if len(jobs) > most else "")
