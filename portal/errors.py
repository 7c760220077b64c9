"""Errors a user can cause: each carries one sentence that names the cause.

The CLI prints ``error: <message>`` for any ``PortalError`` and exits with ``exit_code``;
the web app turns them into an error card. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PortalError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole message."""

    exit_code = 1


class SettingsError(PortalError):
    """A bad ``PORTAL_*`` value; names the variable."""

    exit_code = 2

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class BackendUnavailable(PortalError):
    """A service the command needs does not answer."""

    exit_code = 3


class DatabaseUnavailable(SettingsError):
    """``PORTAL_DATABASE_URL`` does not answer: a setting problem from the user's side."""

    def __init__(self, problem: str) -> None:
        super().__init__("PORTAL_DATABASE_URL", problem)


class QueryTimeout(PortalError):
    """A query ran past its time limit and PostgreSQL cancelled it."""

    def __init__(
        self, seconds: float | None, hint: str = "narrow the range or the pattern"
    ) -> None:
        took = f"longer than {seconds:g} s" if seconds else "too long"
        super().__init__(f"query took {took}; {hint}")
