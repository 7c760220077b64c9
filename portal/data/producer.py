"""The producer API: the pipeline registers pointings, beam events and data products.

Records are checked at the edge (one clear error naming the field), then written through the
one write path (``portal.db.writer``: batched COPY, on-disk spool while the database is away).
Each table has a natural key (products: ``name``; pointings: beam + time; beam events: beam +
kind + time), so registering the same record twice stores it once.

    from portal.data.producer import Producer
    with Producer.from_settings(settings.get()) as p:
        p.register_pointing(time=t, beam=3, ra_deg=83.6, dec_deg=22.0, duration_s=600)
        p.register_beam_event(time=t, beam=3, kind="dm_adjust", value=56.8)
        p.register_product(kind="l1", name="l1/2026/12/01/06/beam0003", path="/data/...",
                           size_bytes=..., checksum="sha256:...", beam=3)
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from portal.data import checksum as checksums
from portal.db.writer import WritePath
from portal.errors import PortalError
from portal.settings import Settings
from portal.timeparse import parse_time

PRODUCT_COLUMNS = (
    "kind",
    "name",
    "host",
    "path",
    "size_bytes",
    "checksum",
    "time_start",
    "time_end",
    "state",
    "metadata",
    "created_at",
    "site",
    "beam",
    "ra_deg",
    "dec_deg",
    "retention",
)
POINTING_COLUMNS = (
    "time",
    "beam",
    "ra_deg",
    "dec_deg",
    "duration_s",
    "rfi_fraction",
    "data_bytes",
    "max_dm",
    "n_candidates",
    "flags",
)
BEAM_EVENT_COLUMNS = ("time", "beam", "kind", "value", "payload")
PRODUCT_STATES = ("writing", "complete")
MAX_TEXT = 1024


def _text(record: Mapping[str, Any], key: str, required: bool = True, default: str = "") -> str:
    value = record.get(key, default)
    if value is None or value == "":
        if required:
            raise PortalError(f"{key} is required")
        return default
    if not isinstance(value, str):
        raise PortalError(f"{key} must be text, not {type(value).__name__}")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise PortalError(f"{key} must be at most {MAX_TEXT} characters without NUL")
    if not value.isascii() and not storable_text(value):
        raise PortalError(f"{key} is not valid Unicode text")
    return value


def storable_text(value: str) -> bool:
    """False for text PostgreSQL cannot store (a NUL, or a lone surrogate from JSON)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(
    record: Mapping[str, Any],
    key: str,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
    required: bool = False,
) -> Any:
    value = record.get(key)
    if value is None:
        if required:
            raise PortalError(f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PortalError(f"{key} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or (integer and value != int(value)):
        raise PortalError(f"{key} must be a finite {'integer' if integer else 'number'}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise PortalError(f"{key} must be between {lo} and {hi}")
    return int(value) if integer else float(value)


def _time(record: Mapping[str, Any], key: str, required: bool = False) -> datetime | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise PortalError(f"{key} is required")
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise PortalError(f"{key} {value!r} is not a time in epoch seconds") from None
    if not isinstance(value, str):
        raise PortalError(f"{key} must be an ISO time or epoch seconds")
    return parse_time(value, key)


def _json(record: Mapping[str, Any], key: str) -> str:
    """The JSON text of an object field (serialised once, here: the write path keeps text)."""
    value = record.get(key)
    if not value:
        return "{}"
    if not isinstance(value, dict):
        raise PortalError(f"{key} must be a JSON object")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PortalError(f"{key} is not storable JSON: {exc}") from None
    if "\\u0000" in text or not storable_text(text):  # jsonb refuses both
        raise PortalError(f"{key} holds a NUL or a lone surrogate, which cannot be stored")
    return text


_KNOWN = frozenset(PRODUCT_COLUMNS) | {"id"}


def _name(record: Mapping[str, Any]) -> str:
    """A product name is also its path below every site's root: no ``..``, no line breaks."""
    name = _text(record, "name")
    if "\n" in name or "\r" in name or ".." in name.split("/"):
        raise PortalError("name must not contain '..' segments or line breaks")
    return name


def _retention_of(kinds: Collection[str], kind: str) -> str:
    declared = kinds.get(kind) if isinstance(kinds, Mapping) else None
    return str(getattr(declared, "retention", "standard"))


@lru_cache(maxsize=1)
def _this_host() -> str:
    return socket.gethostname().split(".")[0]


def product_row(
    record: Mapping[str, Any], kinds: Collection[str], site: str, host: str = ""
) -> tuple[Any, ...]:
    """The ``PRODUCT_COLUMNS`` row of one product record; ``PortalError`` names a bad field.

    ``kinds``: the accepted kind names, or ``{name: ProductKind}`` (then a record without a
    retention class gets its kind's)."""
    if not isinstance(record, Mapping):
        raise PortalError("a product must be a JSON object")
    unknown = record.keys() - _KNOWN
    if unknown:
        raise PortalError(f"unknown field(s): {', '.join(sorted(unknown))}")
    kind = _text(record, "kind")
    if kind not in kinds:
        raise PortalError(f"kind {kind!r} is not one of {', '.join(sorted(kinds))}")
    raw_sum = record.get("checksum")
    checksum = checksums.normalise(raw_sum) if raw_sum else None
    state = record.get("state") or "complete"
    if state not in PRODUCT_STATES:
        raise PortalError(f"state must be one of {', '.join(PRODUCT_STATES)}")
    start, end = _time(record, "time_start"), _time(record, "time_end")
    if start and end and end < start:
        raise PortalError("time_end is before time_start")
    return (
        kind,
        _name(record),
        _text(record, "host", required=False, default=host or _this_host()),
        _text(record, "path"),
        _number(record, "size_bytes", integer=True, lo=0, hi=2**62, required=True),
        checksum,
        start,
        end,
        state,
        _json(record, "metadata"),
        _time(record, "created_at") or datetime.now(UTC),
        _text(record, "site", required=False, default=site),
        _number(record, "beam", integer=True, lo=0, hi=100_000),
        _number(record, "ra_deg", lo=0, hi=360),
        _number(record, "dec_deg", lo=-90, hi=90),
        _text(record, "retention", required=False, default=_retention_of(kinds, kind)),
    )


def pointing_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``POINTING_COLUMNS`` row of one pointing record."""
    return (
        _time(record, "time", required=True),
        _number(record, "beam", integer=True, lo=0, hi=100_000, required=True),
        _number(record, "ra_deg", lo=0, hi=360, required=True),
        _number(record, "dec_deg", lo=-90, hi=90, required=True),
        _number(record, "duration_s", lo=0, required=True),
        _number(record, "rfi_fraction", lo=0, hi=1),
        _number(record, "data_bytes", integer=True, lo=0, hi=2**62),
        _number(record, "max_dm", lo=0),
        _number(record, "n_candidates", integer=True, lo=0, hi=2**31 - 1),
        _json(record, "flags"),
    )


def beam_event_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``BEAM_EVENT_COLUMNS`` row of one beam event (a DM adjustment: ``dm_adjust``)."""
    return (
        _time(record, "time", required=True),
        _number(record, "beam", integer=True, lo=0, hi=100_000, required=True),
        _text(record, "kind", required=False, default="dm_adjust"),
        _number(record, "value"),
        _json(record, "payload"),
    )


def rows_of(
    records: Sequence[Mapping[str, Any]], convert: Any, what: str = "record"
) -> list[tuple[Any, ...]]:
    """Every record converted, or one error naming the first bad one by its position."""
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise PortalError(f"{what} {i}: must be a JSON object")
        try:
            out.append(convert(record))
        except PortalError as exc:
            raise PortalError(f"{what} {i}: {exc}") from None
    return out


class Producer:
    """Batched, spooled, idempotent registration for one pipeline process (thread-safe)."""

    @classmethod
    def from_settings(
        cls, cfg: Settings, *, durable: bool = False, name: str = "producer"
    ) -> Producer:
        return cls(cfg, durable=durable, name=name)

    def __init__(self, cfg: Settings, *, durable: bool = False, name: str = "producer") -> None:
        from portal.data import settings as data_settings
        from portal.data.kinds import all_kinds

        self.cfg, self.durable, self.name = cfg, durable, name
        self.kinds = all_kinds(cfg)
        self.site = str(data_settings.value(cfg, "PORTAL_DATA_SITE"))
        self._paths: dict[str, WritePath] = {}

    def _path(self, table: str, columns: Sequence[str]) -> WritePath:
        if table not in self._paths:
            self._paths[table] = WritePath.from_settings(
                self.cfg, table, columns, name=f"{self.name}-{table}", durable=self.durable
            )
        return self._paths[table]

    def register_products(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Queue products (``PortalError`` on the first bad one; none of the batch is queued)."""
        rows = rows_of(list(records), lambda r: product_row(r, self.kinds, self.site), "product")
        self._path("data_products", PRODUCT_COLUMNS).write_many(rows)
        return len(rows)

    def register_product(self, **record: Any) -> None:
        self.register_products([record])

    def register_pointings(self, records: Iterable[Mapping[str, Any]]) -> int:
        rows = rows_of(list(records), pointing_row, "pointing")
        self._path("pointings", POINTING_COLUMNS).write_many(rows)
        return len(rows)

    def register_pointing(self, **record: Any) -> None:
        self.register_pointings([record])

    def register_beam_events(self, records: Iterable[Mapping[str, Any]]) -> int:
        rows = rows_of(list(records), beam_event_row, "beam event")
        self._path("beam_events", BEAM_EVENT_COLUMNS).write_many(rows)
        return len(rows)

    def register_beam_event(self, **record: Any) -> None:
        self.register_beam_events([record])

    def flush(self, timeout: float = 30.0) -> bool:
        """True when everything registered so far is in the database."""
        return all(p.flush(timeout) for p in self._paths.values())

    def close(self, timeout: float = 10.0) -> None:
        for path in self._paths.values():
            path.close(timeout)
        self._paths.clear()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
