"""Checking the repo's Prometheus alert rules with ``promtool`` (syntax and unit tests)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from portal.errors import PortalError

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "prometheus" / "rules"
TESTS_DIR = REPO / "prometheus" / "tests"


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


def _run(step: str, args: list[str]) -> Result:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
    return Result(step, proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def check(rules_dir: Path = RULES_DIR, tests_dir: Path = TESTS_DIR) -> list[Result]:
    """``promtool check rules`` on every rule file, then ``promtool test rules`` on the tests."""
    tool = _promtool()
    rules = sorted(rules_dir.glob("*.yml"))
    tests = sorted(tests_dir.glob("*.yml"))
    if not rules:
        raise PortalError(f"no rule files (*.yml) in {rules_dir}")
    results = [_run("check rules", [tool, "check", "rules", *map(str, rules)])]
    if tests:
        results.append(_run("test rules", [tool, "test", "rules", *map(str, tests)]))
    return results
