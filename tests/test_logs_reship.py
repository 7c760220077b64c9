"""Exactly once without state: a file shipped again after the shipper's state dir was lost (or
restored on another inode) stores nothing twice, and two files that share a first line are
both stored whole."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collectors.logship import Shipper, parse_sources
from portal.db import engine as db_engine
from portal.settings import Settings
from tests.conftest import shared_tmpdir

# no timestamps: the shipper stamps these lines itself, from its state's clock
PLAIN = ["service starting", "loaded 12 beams", "Traceback (most recent call last):"]
PLAIN += ['  File "x.py", line 1, in <module>', "ValueError: bad beam", "beam 3 recovered"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = shared_tmpdir("obsportal-reship-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ship(cfg: Settings, workdir: Path, host: str, url: str | None = None) -> int:
    """One shipper run over ``workdir/*.log`` until nothing is new; the lines it shipped."""
    run_cfg = cfg.replace(
        data_dir=workdir / "var", host_name=host, database_url=url or cfg.database_url
    )
    shipper = Shipper(run_cfg, parse_sources([f"{workdir}/*.log=app"], workdir), partial_after=0)
    total = 0
    try:
        while shipped := shipper.cycle():
            total += shipped
    finally:
        shipper.close()
    return total


def stored(url: str, host: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(
            "SELECT message, seq FROM log_lines WHERE host = %s ORDER BY seq, message", (host,)
        ).fetchall()


def lose_state(workdir: Path) -> None:
    shutil.rmtree(workdir / "var" / "logship")


def write(path: Path, lines: list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def expected(lines: list[str]) -> int:
    """Rows the lines make: a traceback (head, one frame, the error) is one record."""
    return len(lines) - 2 * lines.count("Traceback (most recent call last):")


def test_state_lost_twice_every_line_once(cfg: Settings, workdir: Path) -> None:
    host = f"reship-{uuid.uuid4().hex[:8]}"
    log = workdir / "app.log"
    write(log, PLAIN)
    assert ship(cfg, workdir, host) == expected(PLAIN)
    first = stored(cfg.database_url, host)
    assert len(first) == expected(PLAIN)
    assert any("ValueError: bad beam" in m for m, _ in first)

    lose_state(workdir)
    assert ship(cfg, workdir, host) == 0  # the store knew where the file ended
    assert stored(cfg.database_url, host) == first

    more = [f"plain line {i}" for i in range(50)]
    write(log, more)
    lose_state(workdir)
    assert ship(cfg, workdir, host) == len(more)  # only what the store did not hold
    after = stored(cfg.database_url, host)
    assert len(after) == len(first) + len(more)
    assert len({seq for _, seq in after}) == len(after)


def test_file_restored_on_another_inode_is_not_stored_again(cfg: Settings, workdir: Path) -> None:
    host = f"reship-{uuid.uuid4().hex[:8]}"
    log = workdir / "app.log"
    write(log, PLAIN)
    ship(cfg, workdir, host)
    first = stored(cfg.database_url, host)
    inode = log.stat().st_ino
    backup = workdir / "app.bak"
    shutil.copyfile(log, backup)
    log.unlink()
    backup.rename(log)  # restored from a backup: same bytes, another inode
    assert log.stat().st_ino != inode
    lose_state(workdir)
    write(log, ["after the restore"])
    assert ship(cfg, workdir, host) == 1
    after = stored(cfg.database_url, host)
    assert after[:-1] == first and after[-1][0] == "after the restore"


def test_files_sharing_a_first_line_are_both_stored_whole(cfg: Settings, workdir: Path) -> None:
    """Two files whose first line is the same are told apart by what follows: nothing is lost."""
    host = f"reship-{uuid.uuid4().hex[:8]}"
    a, b = workdir / "a.log", workdir / "b.log"
    write(a, ["service starting", "beam 1 on"])
    ship(cfg, workdir, host)
    write(b, ["service starting", "beam 2 on", "beam 2 off"])  # a new file: same first line
    lose_state(workdir)  # and a lookup for both
    assert ship(cfg, workdir, host) == 3
    messages = sorted(m for m, _ in stored(cfg.database_url, host))
    assert messages == sorted(["service starting"] * 2 + ["beam 1 on", "beam 2 on", "beam 2 off"])


def test_a_file_waits_while_the_store_cannot_say_what_it_holds(
    cfg: Settings, workdir: Path
) -> None:
    host = f"reship-{uuid.uuid4().hex[:8]}"
    write(workdir / "app.log", PLAIN)
    away = cfg.database_url.rsplit("/", 1)[0] + "/no_such_database_" + uuid.uuid4().hex[:6]
    assert ship(cfg, workdir, host, url=away) == 0  # not guessed: the lines wait in the file
    assert not list((workdir / "var" / "spool").glob("*/*.seg")) or all(
        p.stat().st_size == 0 for p in (workdir / "var" / "spool").glob("*/*.seg")
    )
    assert ship(cfg, workdir, host) == expected(PLAIN)
    assert len(stored(cfg.database_url, host)) == expected(PLAIN)


def test_spooled_rows_are_delivered_before_the_store_is_asked(cfg: Settings, workdir: Path) -> None:
    """State lost while the spool still held a file's rows: they count, nothing is twice."""
    host = f"reship-{uuid.uuid4().hex[:8]}"
    log = workdir / "app.log"
    write(log, PLAIN)
    run_cfg = cfg.replace(data_dir=workdir / "var", host_name=host)
    first = Shipper(run_cfg, parse_sources([f"{workdir}/*.log=app"], workdir), partial_after=0)
    away = cfg.database_url.rsplit("/", 1)[0] + "/no_such_database_" + uuid.uuid4().hex[:6]
    first.discover()  # registered while the store answers
    first.writer.url = away  # then it goes away: the rows stay in the spool
    assert first.cycle() == expected(PLAIN)
    first.writer.close(timeout=1)
    assert not first.writer.spool.empty() and stored(cfg.database_url, host) == []
    lose_state(workdir)
    write(log, ["written after the state was lost"])
    again = Shipper(run_cfg, parse_sources([f"{workdir}/*.log=app"], workdir), partial_after=0)
    again.run(0.05, once=True)
    messages = [m for m, _ in stored(cfg.database_url, host)]
    assert len(messages) == expected(PLAIN) + 1 == len(set(messages))
