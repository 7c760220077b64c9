"""The actor behind a request or a command: what authorization checks and the audit log names."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """``kind``: ``user`` (password or proxy sign-on), ``token``, ``cli`` or ``anonymous``."""

    actor: str
    kind: str
    role: str | None  # None: not authenticated (anonymous access disabled)
    address: str = ""
    request_id: str = ""

    @property
    def label(self) -> str:
        """How the audit log names the actor, e.g. ``user:alice``, ``token:alertmanager``."""
        return f"{self.kind}:{self.actor}"


def cli_identity(role: str | None) -> Identity:
    """The OS user and host running a ``portal`` command."""
    host = socket.gethostname().split(".")[0]
    return Identity(f"{getpass.getuser()}@{host}", "cli", role, address=host)


ANONYMOUS = Identity("anonymous", "anonymous", None)
