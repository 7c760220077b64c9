"""A real OpenSSH server on 127.0.0.1 for the operations and transfer tests.

It runs as a plain child process with a generated config, host key and client key; the caller
stops it by PID (``process.stop``). The client's ``known_hosts`` holds the host key, so clients
can refuse unknown keys as they would in production.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

SSHD = "/usr/sbin/sshd"


class Sshd(NamedTuple):
    """Where the server listens and the files a client needs to reach it."""

    pid: int
    port: int
    user: str
    key: Path  # client private key (ed25519, no passphrase)
    known_hosts: Path  # "[127.0.0.1]:PORT ssh-ed25519 ..."
    log: Path

    def ssh_command(self) -> list[str]:
        """``ssh`` options that reach this server strictly (for ``rsync -e``)."""
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.key),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]


def available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start(tmp: Path, port: int) -> Sshd:
    """Start sshd on ``127.0.0.1:port``; returns once it accepts a real login (or raises)."""
    from portal.stack import process

    tmp.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege-separation dir
    host_key, client_key = tmp / "host_ed25519", tmp / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            _keygen(key)
    authorized = tmp / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    host_pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {tmp / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "MaxSessions 50",
                "MaxStartups 50:30:100",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    log = tmp / "sshd.log"
    pid = process.spawn([SSHD, "-D", "-e", "-f", str(config)], log)
    server = Sshd(pid, port, getpass.getuser(), client_key, known_hosts, log)

    def logs_in() -> bool:
        probe = subprocess.run(
            [*server.ssh_command(), "-o", "ConnectTimeout=2", "127.0.0.1", "true"],
            capture_output=True,
            timeout=10,
        )
        return probe.returncode == 0

    if not process.wait_until(logs_in, 20):
        process.stop(pid, timeout=5)
        raise AssertionError("sshd did not accept a login:\n" + process.tail(log))
    return server
