"""Checking the Prometheus rules with ``promtool``: every plugin's rule files (syntax) and the
shipped unit tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from portal import plugins
from portal.errors import PortalError
from portal.resources import shipped
from portal.settings import Settings


def rule_files(cfg: Settings) -> list[Path]:
    """Every rule file the loaded plugins ship (``prometheus_rule_files``)."""
    files: list[Path] = plugins.get(cfg).results("prometheus_rule_files")
    return files


def tests_dir() -> Path:
    """The shipped promtool unit tests (they name their rule files relative to themselves)."""
    return shipped("prometheus") / "tests"


@dataclass(frozen=True)
class Result:
    step: str
    ok: bool
    output: str


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        raise PortalError(
            "promtool not found; install the Debian package prometheus (apt-get install -y "
            "prometheus)"
        )
    return found


def _run(step: str, args: list[str], cwd: Path) -> Result:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)
    return Result(step, proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def check(rules: Sequence[Path], tests: Path | None = None) -> list[Result]:
    """``promtool check rules`` on every rule file, then ``promtool test rules`` on the tests."""
    tool = _promtool()
    test_files = sorted(tests.glob("*.yml")) if tests else []
    if not rules:
        raise PortalError("no Prometheus rule files are registered (prometheus_rule_files)")
    cwd = Path(rules[0]).parent
    results = [_run("check rules", [tool, "check", "rules", *map(str, rules)], cwd)]
    if test_files:
        results.append(
            _run("test rules", [tool, "test", "rules", *map(str, test_files)], test_files[0].parent)
        )
    return results
