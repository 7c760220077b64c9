"""``portal data``: register and find products, sites and replication rules, transfers,
deletions with a veto window, storage accounting, and the evaluator and worker components."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from portal import settings
from portal.auth.roles import requires
from portal.errors import PortalError


def _cfg() -> settings.Settings:
    return settings.get()


def _who() -> Any:
    from portal.auth.cli_access import current

    return current()


def _audit(action: str, target: str, **kw: Any) -> None:
    from portal.auth import audit

    audit.record(_cfg().database_url, _who(), audit.Entry(action, target, **kw))


def _site_name() -> str:
    from portal.data import settings as data_settings

    return str(data_settings.value(_cfg(), "PORTAL_DATA_SITE"))


def _pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key:
            raise PortalError(f"{what} {v!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@click.group()
def data() -> None:
    """Data products: register, find, replicate, delete safely, account for storage."""


# -- producer side ---------------------------------------------------------------------------
@requires("scientist")
@data.command("register")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--kind", default="", help="Product kind (portal data kinds).")
@click.option("--name", default="", help="Product name (one path only); default KIND/FILENAME.")
@click.option("--beam", type=int, default=None)
@click.option("--start", default="", help="Start of the time it covers (ISO or 2h).")
@click.option("--end", default="", help="End of the time it covers.")
@click.option("--ra", type=float, default=None, help="Right ascension of its pointing (deg).")
@click.option("--dec", type=float, default=None, help="Declination of its pointing (deg).")
@click.option("--retention", default="", help="Retention class; default the kind's.")
@click.option("--meta", multiple=True, help="KEY=VALUE added to its metadata (repeatable).")
@click.option(
    "--json",
    "json_file",
    type=click.File("r"),
    default=None,
    help="Register the JSON records (one per line) of this file ('-': stdin) instead.",
)
def register_cmd(
    paths: tuple[Path, ...],
    kind: str,
    name: str,
    beam: int | None,
    start: str,
    end: str,
    ra: float | None,
    dec: float | None,
    retention: str,
    meta: tuple[str, ...],
    json_file: Any,
) -> None:
    """Register products: files (size and checksum computed here) or JSON records."""
    from portal.data import catalog, producer
    from portal.data import checksum as checksums
    from portal.data.kinds import all_kinds

    cfg = _cfg()
    kinds = all_kinds(cfg)
    records: list[dict[str, Any]] = []
    if json_file is not None:
        for n, line in enumerate(json_file, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise PortalError(f"line {n}: not JSON: {exc}") from None
    else:
        if not paths or not kind:
            raise PortalError("give files and --kind, or --json FILE")
        if name and len(paths) > 1:
            raise PortalError("--name needs exactly one file")
        if kind not in kinds:
            raise PortalError(f"kind {kind!r} is not one of {', '.join(sorted(kinds))}")
        for path in paths:
            if not path.is_file():
                raise PortalError(f"{path} is not a file")
            record: dict[str, Any] = {
                "kind": kind,
                "name": name or f"{kind}/{path.name}",
                "path": str(path.resolve()),
                "size_bytes": path.stat().st_size,
                "checksum": checksums.of_file(path),
                "metadata": _pairs(meta, "--meta"),
                "retention": retention or kinds[kind].retention,
            }
            for key, value in (
                ("beam", beam),
                ("time_start", start),
                ("time_end", end),
                ("ra_deg", ra),
                ("dec_deg", dec),
            ):
                if value not in (None, ""):
                    record[key] = value
            records.append(record)
    rows = producer.rows_of(records, lambda r: producer.product_row(r, kinds, _site_name()))
    new = catalog.store_products(cfg.database_url, rows)
    _audit("data.register.products", "data_products", params={"records": len(rows), "new": new})
    click.echo(f"{len(rows)} product(s): {new} new, {len(rows) - new} already registered")


@requires("scientist")
@data.command("scan")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--kind", required=True, help="Kind of every file found.")
@click.option("--prefix", default="", help="Name prefix; default KIND/ (names: PREFIX+relpath).")
@click.option("--jobs", type=click.IntRange(1, 64), default=4, help="Checksums in parallel.")
@click.option("--meta", multiple=True, help="KEY=VALUE added to every product's metadata.")
def scan_cmd(path: Path, kind: str, prefix: str, jobs: int, meta: tuple[str, ...]) -> None:
    """Register what is on disk under PATH (resumable: registered files are skipped)."""
    from portal.data.kinds import all_kinds
    from portal.data.scan import scan

    cfg = _cfg()
    result = scan(
        cfg.database_url,
        path,
        kind,
        all_kinds(cfg),
        _site_name(),
        prefix=prefix,
        jobs=jobs,
        fields={"metadata": _pairs(meta, "--meta")},
    )
    _audit("data.scan", str(path), params={"kind": kind, "registered": result.registered})
    click.echo(
        f"{result.seen} file(s): {result.registered} registered, {result.skipped} already in "
        f"the catalog, {result.bytes_hashed / 1e6:.1f} MB checksummed"
    )


@data.command("kinds")
def kinds_cmd() -> None:
    """Product kinds the catalog accepts (built-in and from plugins)."""
    from portal.data.kinds import all_kinds

    for k in all_kinds(_cfg()).values():
        click.echo(f"{k.name:18} {k.retention:10} {k.help}")


@data.command("ls")
@click.option("--kind", default="")
@click.option("--beam", type=int, default=None)
@click.option("--site", default="", help="Products with a copy at this site.")
@click.option("--state", default="", help="complete | deleted, or a replica state at --site.")
@click.option("--name", default="", help="Glob on the name (* and ?).")
@click.option("--since", default="", help="Covering time after (ISO or 2h).")
@click.option("--until", default="", help="Covering time before.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ls_cmd(
    kind: str,
    beam: int | None,
    site: str,
    state: str,
    name: str,
    since: str,
    until: str,
    limit: int,
    as_json: bool,
) -> None:
    """Search the catalog, newest first, with each product's copies."""
    from portal.data import catalog
    from portal.data.accounting import human
    from portal.timeparse import parse_time

    q = catalog.Query(
        kind=kind,
        beam=beam,
        site=site,
        state=state,
        name=name,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        limit=limit,
    )
    for p in catalog.search(_cfg().database_url, q):
        if as_json:
            click.echo(json.dumps(catalog.jsonable(p), default=str))
            continue
        copies = ",".join(f"{r['site']}:{r['state']}" for r in p["replicas"]) or "-"
        click.echo(
            f"{p['kind']:15} {p['name']:48} {human(p['size_bytes']):>10} {p['site']}:{p['state']}"
            f"  copies {copies}"
        )


@data.command("coverage")
@click.option("--days", type=click.IntRange(1, 366), default=14)
@click.option("--sky", default="", help="One sky position (metadata sky, or beamNNNN).")
def coverage_cmd(days: int, sky: str) -> None:
    """Hhat coverage per sky position: missing daily stacks and why; monthly/cumulative current?"""
    from portal.data import coverage

    found = coverage.coverage(_cfg().database_url, days, sky)
    for pos in found:
        click.echo(
            f"{pos.sky:14} {len(pos.present):3}/{days} daily  "
            f"monthly {'current' if pos.monthly_current else 'behind'}  "
            f"cumulative {'current' if pos.cumulative_current else 'behind'}  "
            f"{coverage.summary(pos)}"
        )
    if not found:
        click.echo("no Hhat stacks registered")


# -- sites and rules -------------------------------------------------------------------------
@data.group("site")
def site_group() -> None:
    """Sites where copies are kept (ssh://user@host:port/root or file:///root)."""


@requires("operator")
@site_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--max-active", type=click.IntRange(1, 1000), default=2, help="Concurrent copies.")
@click.option("--bwlimit", type=click.IntRange(0, 10**9), default=0, help="KB/s per copy; 0: none.")
@click.option("--capacity", default="", help="Filesystem size (e.g. 2PB), for days until full.")
@click.option("--identity-file", default="", help="SSH private key.")
@click.option("--known-hosts", default="", help="SSH known_hosts file (strict host keys).")
@click.option("--globus-source", default="", help="Globus collection the pipeline writes to.")
@click.option("--token-file", default="", help="File holding a Globus Transfer access token.")
def site_add(
    name: str,
    url: str,
    max_active: int,
    bwlimit: int,
    capacity: str,
    identity_file: str,
    known_hosts: str,
    globus_source: str,
    token_file: str,
) -> None:
    """Add or change a site (ssh://user@host:port/root, file:///root, globus://ID/root)."""
    from portal.data import sites
    from portal.data.settings import parse_size

    given = (
        ("identity_file", identity_file),
        ("known_hosts", known_hosts),
        ("source_collection", globus_source),
        ("token_file", token_file),
    )
    options = {k: v for k, v in given if v}
    site = sites.Site(
        name, url, max_active, bwlimit, int(parse_size(capacity)) if capacity else None, options
    )
    before = sites.save(_cfg().database_url, site)
    _audit("data.site.add", name, before=before, after={"url": url, "max_active": max_active})
    click.echo(f"site {name}: {url}")


@site_group.command("ls")
def site_ls() -> None:
    """Sites and their limits."""
    from portal.data import sites
    from portal.data.accounting import human

    for s in sites.all_sites(_cfg().database_url):
        bw = f"{s.bwlimit_kbps} KB/s" if s.bwlimit_kbps else "unlimited"
        click.echo(f"{s.name:16} {s.url:50} max {s.max_active}  {bw}  {human(s.capacity_bytes)}")


@data.group("rule")
def rule_group() -> None:
    """Replication rules: every matching product has a verified copy at a site."""


@requires("operator")
@rule_group.command("add")
@click.argument("name")
@click.option("--kind", required=True)
@click.option("--site", required=True)
@click.option("--where", multiple=True, help="KEY=VALUE the product's metadata must contain.")
@click.option("--within", default="24h", help="The copy is due this long after creation.")
def rule_add(name: str, kind: str, site: str, where: tuple[str, ...], within: str) -> None:
    """Add or change a rule."""
    from portal.data import rules
    from portal.timeparse import parse_duration

    within_s = int(parse_duration(within, "--within").total_seconds())
    selector = _pairs(where, "--where")
    before = rules.add(_cfg().database_url, name, kind, site, selector, within_s)
    _audit(
        "data.rule.add",
        name,
        before=before,
        after={"kind": kind, "site": site, "selector": selector, "within_s": within_s},
    )
    shown = (
        " where " + ", ".join(f"{k}={json.dumps(v)}" for k, v in selector.items())
        if selector
        else ""
    )
    click.echo(f"rule {name}: every {kind}{shown} -> {site}")


@requires("operator")
@rule_group.command("suspend")
@click.argument("name")
@click.option("--reason", default="")
def rule_suspend(name: str, reason: str) -> None:
    """Stop a rule queueing copies."""
    from portal.data import rules

    before = rules.set_suspended(_cfg().database_url, name, True)
    _audit("data.rule.suspend", name, reason=reason, before={"state": before})
    click.echo(f"rule {name}: SUSPENDED")


@requires("operator")
@rule_group.command("resume")
@click.argument("name")
def rule_resume(name: str) -> None:
    """Let a suspended rule queue copies again."""
    from portal.data import rules

    before = rules.set_suspended(_cfg().database_url, name, False)
    _audit("data.rule.resume", name, before={"state": before})
    click.echo(f"rule {name}: REPLICATING")


@rule_group.command("ls")
def rule_ls() -> None:
    """Rules with their state, completion and last error."""
    from portal.data import rules

    for r in rules.listing(_cfg().database_url):
        click.echo(
            f"{r['name']:24} {r['state']:11} {r['done']}/{r['total']}  {r['kind']} -> {r['site']}"
            + (f"  last error: {r['last_error']}" if r["last_error"] else "")
        )


# -- transfers -------------------------------------------------------------------------------
@data.command("transfers")
@click.option("--json", "as_json", is_flag=True)
def transfers_cmd(as_json: bool) -> None:
    """Queue, active copies with progress, throughput, ETA, failures by error class."""
    from portal.data import queue
    from portal.data.accounting import human

    snap = queue.snapshot(_cfg().database_url)
    if as_json:
        click.echo(json.dumps(snap, default=str))
        return
    for row in snap["by_state"]:
        click.echo(
            f"{row['site']:16} {row['state']:10} {row['status']:20} {row['requests']:8}  "
            f"{human(row['bytes_left'])} left"
        )
    for a in snap["active"]:
        pct = 100 * a["bytes_done"] / a["bytes_total"] if a["bytes_total"] else 0
        click.echo(f"  copying {a['product']} -> {a['site']} {pct:.0f}% ({a['worker']})")
    for f in snap["failing"]:
        click.echo(f"  failing {f['site']} {f['error_class']}: {f['requests']} ({f['last_error']})")
    eta = f"{snap['eta_hours']:.1f} h" if snap["eta_hours"] is not None else "-"
    days = f"{snap['backlog_days']:.2f}" if snap["backlog_days"] is not None else "-"
    click.echo(
        f"throughput {human(snap['throughput_mb_s'] * 1e6)}/s, "
        f"backlog {human(snap['backlog_bytes'])}, "
        f"ETA {eta}, {days} day(s) of production"
    )


@requires("operator")
@data.command("retry")
@click.argument("site")
def retry_cmd(site: str) -> None:
    """Queue a site's FAILED transfers again (after fixing the site)."""
    from portal.data import queue

    n = queue.requeue_site(_cfg().database_url, site)
    _audit("data.transfer.retry", site, params={"requests": n})
    click.echo(f"{n} transfer(s) queued again for {site}")


@requires("operator")
@data.command("verify")
@click.option("--site", required=True)
def verify_cmd(site: str) -> None:
    """Recompute the checksum of every AVAILABLE copy at SITE; a mismatch is BAD and re-copied."""
    from portal.data import verify

    checked, bad = verify.site(_cfg(), site)
    _audit("data.verify", site, params={"checked": checked, "bad": bad})
    click.echo(f"{checked} copies checked at {site}: {bad} BAD (queued for copying again)")
    if bad:
        sys.exit(1)


# -- deletion --------------------------------------------------------------------------------
@requires("operator")
@data.command("delete")
@click.argument("name")
@click.option("--site", required=True)
@click.option("--reason", required=True)
def delete_cmd(name: str, site: str, reason: str) -> None:
    """Announce the deletion of a product's copy at SITE (done after the veto window)."""
    from portal.data import deletion

    deletion_id = deletion.announce(_cfg(), _who(), name, site, reason)
    click.echo(f"deletion {deletion_id} announced: portal data veto {deletion_id} to stop it")


@requires("operator")
@data.command("veto")
@click.argument("deletion_id", type=int)
@click.option("--reason", required=True)
def veto_cmd(deletion_id: int, reason: str) -> None:
    """Veto an announced deletion."""
    from portal.data import deletion

    deletion.veto(_cfg(), _who(), deletion_id, reason)
    click.echo(f"deletion {deletion_id} vetoed")


@data.command("deletions")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
def deletions_cmd(limit: int) -> None:
    """Announced, vetoed and done deletions, newest first."""
    from portal.data import deletion

    for d in deletion.listing(_cfg().database_url, limit):
        click.echo(
            f"{d['id']:6} {d['state']:9} {d['product']}@{d['site']}  not before "
            f"{d['not_before']:%Y-%m-%d %H:%M}  by {d['requested_by']}: {d['reason']}"
        )


# -- accounting ------------------------------------------------------------------------------
@data.command("storage")
@click.option("--days", type=click.IntRange(1, 3650), default=7, help="Days of arrivals shown.")
def storage_cmd(days: int) -> None:
    """Bytes by kind, site and day; budgets; days until each site is full."""
    from portal.data import accounting as acc

    cfg = _cfg()
    for row in acc.bytes_by(cfg.database_url, days):
        click.echo(f"{row['day']}  {row['site']:16} {row['kind']:16} {acc.human(row['bytes'])}")
    for b in acc.budgets(cfg):
        unit = "/day" if b["per_day"] else ""
        ratio = f"{100 * b['ratio']:.0f}%" if b["ratio"] is not None else "-"
        click.echo(
            f"budget {b['kind']:16} {acc.human(b['actual_bytes'])}{unit} of "
            f"{acc.human(b['budget_bytes'])}{unit} ({ratio})"
        )
    for f in acc.forecast(cfg):
        days_left = acc.days_text(f.days_until_full) + (
            " days" if f.days_until_full is not None and f.days_until_full <= 3650 else ""
        )
        click.echo(
            f"site {f.site:16} used {acc.human(f.used_bytes)} of {acc.human(f.capacity_bytes)}, "
            f"{acc.human(f.rate_bytes_per_day)}/day, full in {days_left}"
        )


# -- components ------------------------------------------------------------------------------
@requires("operator")
@data.command("demo")
def demo_cmd() -> None:
    """make run's data demo: a local SSH site, a rule, Hhat monthly stacks every minute."""
    from portal.data import demo

    demo.main(_cfg())


@requires("operator")
@data.command("evaluate")
@click.option("--once", is_flag=True, help="One pass, then exit.")
def evaluate_cmd(once: bool) -> None:
    """The rule evaluator: queue copies, set rule states, carry out due deletions."""
    from portal.data import deletion, retention, rules

    cfg = _cfg()
    if not once:
        rules.run(cfg)
        return
    for s in rules.evaluate(cfg):
        click.echo(f"{s.name}: {s.state} {s.done}/{s.total}")
    proposed = retention.apply(cfg)
    if proposed:
        click.echo(f"{proposed} deletion(s) announced by retention policies")
    n = deletion.run_due(cfg)
    if n:
        click.echo(f"{n} deletion(s) done")


@requires("operator")
@data.command("worker")
@click.option("--once", is_flag=True, help="Copy what is due now, then exit.")
@click.option("--site", default="", help="Only transfers to this site.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, help="Copies at once.")
def worker_cmd(once: bool, site: str, threads: int) -> None:
    """A transfer worker: rsync over SSH, verified at the destination."""
    from portal.data.transfer import Worker, run_threads

    worker = Worker(_cfg())
    if not once:
        run_threads(_cfg(), threads, site)
        return
    n = 0
    while worker.run_once(site):
        n += 1
    click.echo(f"{n} transfer(s) attempted")
