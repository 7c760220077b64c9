"""The data demo (``portal data demo``, in ``make run`` only): a second local site reached over
real SSH, a rule copying every Hhat monthly stack there, and small real stack files registered
through the producer API every minute, so the Transfers page shows them go from QUEUED to
AVAILABLE. Without an OpenSSH server installed it says so once and copies nothing."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from portal.data import rules, sites
from portal.data.checksum import of_file
from portal.data.producer import Producer
from portal.settings import Settings
from portal.stack import process

log = logging.getLogger(__name__)
SITE = "computecanada-demo"
RULE = "hhat-monthly-to-computecanada"
SSHD = "/usr/sbin/sshd"
SKY_POSITIONS = 4
STACK_BYTES = 64 * 1024  # small: the demo runs for days; 4 stacks a minute, 0.4 GB a day


def missing() -> str:
    """Why the demo cannot copy over SSH here ("" when it can)."""
    needed = {"sshd": Path(SSHD).exists(), "ssh-keygen": bool(shutil.which("ssh-keygen"))}
    needed["rsync"] = bool(shutil.which("rsync"))
    absent = [name for name, ok in needed.items() if not ok]
    if absent:
        return (
            f"{', '.join(absent)} not installed: Hhat monthly stacks are registered but not "
            "copied (apt-get install -y openssh-server rsync, then make run)"
        )
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sshd(folder: Path) -> tuple[int, sites.Site]:
    """An sshd on 127.0.0.1 accepting only a key of its own; returns its pid and the site."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                check=True,
                capture_output=True,
            )
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    algo, public = host_key.with_suffix(".pub").read_text().split()[:2]
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {algo} {public}\n")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxSessions 50\n"
    )
    pid = process.spawn([SSHD, "-D", "-e", "-f", str(config)], folder / "sshd.log")
    archive = folder / "archive"
    site = sites.Site(
        SITE,
        f"ssh://{getpass.getuser()}@127.0.0.1:{port}{archive}",
        max_active=2,
        options={"identity_file": str(client_key), "known_hosts": str(known)},
    )
    if not process.wait_until(lambda: site.run(["true"], timeout=10).returncode == 0, 20):
        process.stop(pid, timeout=5)
        tail = process.tail(folder / "sshd.log")
        raise RuntimeError(f"the demo sshd did not accept a login: {tail}")
    return pid, site


def write_stacks(root: Path, producer: Producer, now: datetime) -> int:
    """Small real Hhat monthly stack files, registered through the producer API."""
    stamp = now.strftime("%d%H%M%S")
    records = []
    for sky in range(SKY_POSITIONS):
        name = f"hhat_monthly/{now:%Y/%m}/sky{sky:02d}/v{stamp}.npy"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(STACK_BYTES))
        records.append(
            {
                "kind": "hhat_monthly",
                "name": name,
                "path": str(path),
                "size_bytes": STACK_BYTES,
                "checksum": of_file(path),
                "ra_deg": 30.0 + 80 * sky,
                "dec_deg": 20.0,
                "time_start": datetime(now.year, now.month, 1, tzinfo=UTC),
                "time_end": now,
                "metadata": {"sky": f"sky{sky:02d}", "demo": True},
                "retention": "archive",
            }
        )
    producer.register_products(records)
    producer.flush(30)
    return len(records)


def run(cfg: Settings, stop: threading.Event, every_s: float = 60.0) -> None:
    """Until ``stop``: keep the demo site and rule, write and register stacks every minute."""
    why = missing()
    sshd_pid = None
    if why:
        log.warning("data demo: %s", why)
        print(f"data demo: {why}", flush=True)
    else:
        sshd_pid, site = start_sshd(cfg.data_dir / "demo-site")
        sites.save(cfg.database_url, site)
        rules.add(cfg.database_url, RULE, "hhat_monthly", SITE, {"demo": True}, 86400)
        print(f"data demo: rule {RULE} copies Hhat monthly stacks to {site.url}", flush=True)
    producer = Producer(cfg, name="data-demo")
    try:
        while not stop.is_set():
            try:
                write_stacks(cfg.data_dir / "demo-products", producer, datetime.now(UTC))
            except Exception as exc:  # noqa: BLE001 - database away: the next round tries again
                log.warning("data demo: stacks not registered (%s)", str(exc).splitlines()[0])
            stop.wait(every_s)
    finally:
        producer.close()
        if sshd_pid is not None:
            process.stop(sshd_pid, timeout=5)


def main(cfg: Settings) -> None:
    """Run until SIGTERM or SIGINT (``portal run`` stops components with SIGTERM)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(cfg, stop)
