"""Turn one raw log line into (time, level, message, labels): JSON lines, logfmt or plain text.

Parsing is deterministic (same bytes, same result) because the shipper's idempotency key
includes the time: a line re-read after a crash must map to the same row.

Every result is storable (``portal.db.storable``): NUL and lone surrogates (``"\\ud800"`` in
JSON or logfmt escapes) become U+FFFD, NaN/Infinity in JSON values become the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, and oversize fields are cut with a visible
``...[truncated N chars]`` marker: the message at ``MAX_MESSAGE_CHARS``, each label key at
``MAX_LABEL_KEY_CHARS``, each label value at ``MAX_LABEL_VALUE_CHARS`` (a nested value as its
JSON text), and labels beyond ``MAX_LABELS_CHARS`` of JSON in total are dropped, counted in a
``_truncated`` label. A JSON line nested deeper than ``MAX_JSON_DEPTH`` is read as plain text,
and a numeric level of ``NaN``/``Infinity`` is a level like any number. A record's own
``host``/``component`` keys are labels like any other (the shipper stores them as
``record_host``/``record_component``); the shipper's host and component columns are cut at
``MAX_NAME_CHARS``.

Terminal colour codes (ANSI escapes) are removed before anything else. A record may span lines
(a Python traceback): ``parse_line`` takes its text joined by ``\n``, reads the time and level
from the first line and keeps the rest as part of the message; ``line_kind`` tells the shipper
which lines open a record.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.scanner import make_scanner
from typing import Any

from portal.db.storable import clean_text, clean_value, truncate

MAX_MESSAGE_CHARS = 65536
MAX_LABEL_KEY_CHARS = 256
MAX_LABEL_VALUE_CHARS = 4096
MAX_LABELS_CHARS = 16384  # the labels' JSON text, in total
MAX_NAME_CHARS = 256  # host and component: indexed columns, a B-tree entry must stay small

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ALIASES = {
    "TRACE": "DEBUG",
    "DBG": "DEBUG",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "INF": "INFO",
    "NOTICE": "INFO",
    "INFORMATION": "INFO",
    "LOG": "INFO",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "WRN": "WARNING",
    "ERR": "ERROR",
    "ERROR": "ERROR",
    "EROR": "ERROR",
    "CRIT": "CRITICAL",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
    "PANIC": "CRITICAL",
    "ALERT": "CRITICAL",
    "EMERG": "CRITICAL",
}
#: a level word as written (``info``, ``Warning``, ``ERROR``): its stored level in one look-up
_LEVEL_SPELLINGS = {
    spelling: level
    for alias, level in _ALIASES.items()
    for spelling in (alias, alias.lower(), alias.capitalize())
}
_TIME_KEYS = ("time", "ts", "timestamp", "@timestamp", "t", "asctime", "date")
_LEVEL_KEYS = ("level", "lvl", "severity", "levelname", "loglevel")
_MSG_KEYS = ("msg", "message", "log", "event")
_KNOWN_KEYS = frozenset({*_TIME_KEYS, *_LEVEL_KEYS, *_MSG_KEYS})
#: deeper JSON is read as text: the decoder would exhaust the stack (RecursionError), at a
#: depth that depends on the caller's, and parsing must not depend on where it is called from
MAX_JSON_DEPTH = 200
# what json.loads runs, without its wrapping (typeshed wants the C scanner's own type here)
_JSON_SCAN = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_BRACKETS = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)

# 2026-12-01T06:50:38.123Z, 2026-12-01 06:50:38,123 +0000, ...
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<clock>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"\s?(?P<tz>Z|[+-]\d{2}:?\d{2}|UTC)?"
)
_PLAIN_ISO = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)"
)
_ISO_TEXT = re.compile(r"\[?" + _ISO.pattern + r"\]?")
_LEVEL_ALT = "|".join(sorted(_ALIASES, key=len, reverse=True))
_LEVEL_WORD = re.compile(r"\[?\b(" + _LEVEL_ALT + r")\b\]?:?")
# what json.loads may turn into a value PostgreSQL refuses: NaN/Infinity, escapes of NUL and
# of surrogates
_DECODED_SUSPECT = re.compile(r"NaN|Infinity|\\u0000|\\u[dD][89a-fA-F]")
_LOGFMT = re.compile(r'([A-Za-z_@][\w.@-]*)=("[^"\\]*(?:\\.[^"\\]*)*"|\S*)')  # "..." unrolled
# CSI (colours, cursor), OSC (titles, links) and two-byte escapes
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_ALT = "|".join(_MONTHS)
# syslog's <PRI> (RFC 3164 and 5424, whose version "1" follows it)
_PRI = re.compile(r"<(?P<pri>\d{1,3})>(?:1 )?")
# RFC 3164: "Dec  1 14:05:03" (no year, local time of the sender; read as UTC)
_SYSLOG = re.compile(
    r"(?P<mon>" + _MONTH_ALT + r") (?P<day>[ \d]?\d) (?P<clock>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,6}))?(?=\s|$)"
)
# Apache/nginx (common log format): [01/Dec/2026:14:05:03 +0000]
_CLF = re.compile(
    r"\[(?P<day>\d{2})/(?P<mon>" + _MONTH_ALT + r")/(?P<year>\d{4}):(?P<clock>\d{2}:\d{2}:\d{2})"
    r"(?: (?P<tz>[+-]\d{4}))?\]"
)
# a leading epoch number: seconds (10 digits, optional fraction) or milliseconds (13 digits)
_EPOCH = re.compile(r"(?P<num>\d{10}(?:\.\d{1,9})?|\d{13})(?=\s|$)")
_EPOCH_TEXT = re.compile(r"-?\d{9,19}(?:\.\d{1,9})?")
_SEVERITY = ("CRITICAL", "CRITICAL", "CRITICAL", "ERROR", "WARNING", "INFO", "INFO", "DEBUG")
# lines that continue the record above them (a traceback's frames and its chaining sentences)
_CONTINUATION = re.compile(
    r"\s|Traceback \(most recent call last\):|During handling of the above exception"
    r"|The above exception was the direct cause|Caused by:|\.\.\. \d+ more"
)
_LOGFMT_START = re.compile(r"[A-Za-z_@][\w.@-]*=")
_LEVEL_START = re.compile(r"\[?(?:" + _LEVEL_ALT + r")\b")

HEAD, CONTINUATION, OTHER = "head", "continuation", "other"


@dataclass(slots=True)
class Parsed:
    """One parsed line; ``time`` is None when the line carries no timestamp. ``stamp``: the
    time as the line wrote it, when that is plain ISO 8601 with a zone and at most
    microseconds (PostgreSQL reads it as the same instant; None: format ``time``)."""

    time: datetime | None
    level: str
    message: str
    labels: dict[str, Any] = field(default_factory=dict)
    stamp: str | None = None


def normalize_level(raw: object, default: str = "INFO") -> str:
    """Map level spellings (warn, ERR, fatal, 30, ...) onto the five stored levels."""
    if type(raw) is str:
        level = _LEVEL_SPELLINGS.get(raw)
        if level is not None:
            return level
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # Python logging numbers; compared as they are (int() of NaN or Infinity raises)
        for threshold, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO")):
            if raw >= threshold:
                return name
        return "DEBUG"
    return _ALIASES.get(str(raw).strip().upper(), default)


def parse_time(raw: object) -> datetime | None:
    """An ISO-8601 string or Unix seconds/milliseconds/nanoseconds; naive times are UTC."""
    if type(raw) is str and ":" in raw:  # the common ISO forms, not an epoch number
        try:
            when = datetime.fromisoformat(raw)
            return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        except ValueError:
            pass
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
        for limit, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):  # ns, us, ms
            if abs(value) > limit:
                value /= scale
                break
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(raw, str):
        return None
    if ":" not in raw and _EPOCH_TEXT.fullmatch(raw.strip()):  # "1764597903.5" (JSON, logfmt)
        return parse_time(float(raw))
    try:  # fast path: the common ISO forms (C code); odd ones go through the regex
        when = datetime.fromisoformat(raw)
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        pass
    match = _ISO.match(raw.strip())
    if match:
        return _from_match(match)
    found = _other_time(raw.strip(), 0)
    return found[0] if found else None


def _time_and_stamp(raw: object) -> tuple[datetime | None, str | None]:
    """A JSON or logfmt time field read (``parse_time``), and its text as ``Parsed.stamp``."""
    when = parse_time(raw)
    if when is not None and type(raw) is str and _PLAIN_ISO.fullmatch(raw):
        return when, raw
    return when, None


def _from_match(match: re.Match[str]) -> datetime | None:
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    tz = match["tz"] or "Z"
    tz = "+00:00" if tz in ("Z", "UTC") else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['clock']}.{frac}{tz}").astimezone(
            UTC
        )
    except ValueError:
        return None


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves, titles)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def line_kind(line: str) -> str:
    """Whether a line opens a record (``HEAD``), continues one (``CONTINUATION``), or neither.

    ``CONTINUATION``: starts with whitespace, or is a traceback's ``Traceback (most recent call
    last):``/``During handling ...``/``The above exception ...`` line (Java's ``Caused by:``,
    ``... N more`` too). ``HEAD``: a timestamp near the start (any format ``parse_line``
    reads), a JSON object, a ``key=`` logfmt pair, a syslog ``<PRI>`` or a level word first.
    ``OTHER`` (``ValueError: bad``, a plain print) continues a record whose first line is a
    ``HEAD`` and stands alone otherwise. ``line`` has no escapes (``strip_ansi``).
    """
    if not line:
        return CONTINUATION
    if line[0] == "{":  # JSON, and no continuation starts so
        return HEAD
    if _CONTINUATION.match(line):
        return CONTINUATION
    if (
        _LOGFMT_START.match(line)
        or _ISO_TEXT.search(line, 0, 64)
        or _PRI.match(line)
        or _LEVEL_START.match(line)
        or _other_time(line, 64)
    ):
        return HEAD
    return OTHER


def parse_line(line: str) -> Parsed:
    """Pick the format by shape: ``{`` starts JSON, ``key=value`` pairs are logfmt, else text.

    ``line`` may hold a whole record (lines joined by ``\n``): the first line is parsed, the
    others are appended to its message.
    """
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if "\x00" in line or not line.isascii():
        line = clean_text(line)  # PostgreSQL text cannot hold NUL or lone surrogates
    if "\n" in line:
        line, _, rest = line.partition("\n")
        parsed = _parse(line)
        parsed.message = f"{parsed.message}\n{rest}"
    else:
        parsed = _parse(line)
    # escapes (\u0000, \ud800) and NaN decode to what PostgreSQL refuses; fields may be huge
    message = parsed.message
    if "\x00" in message or not message.isascii():
        message = clean_text(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = truncate(message, MAX_MESSAGE_CHARS)
    parsed.message = message
    if parsed.labels:
        if ("NaN" in line or "Infinity" in line or "\\u" in line) and _DECODED_SUSPECT.search(line):
            parsed.labels = clean_value(parsed.labels)
        if len(line) > MAX_LABEL_VALUE_CHARS // 2 or (
            len(line) > MAX_LABEL_KEY_CHARS  # a key is never longer than the line it came from
            and any(len(k) > MAX_LABEL_KEY_CHARS for k in parsed.labels)
        ):  # a shorter line's labels are within every limit, even re-encoded
            parsed.labels = limit_labels(parsed.labels)
    return parsed


def _parse(line: str) -> Parsed:
    stripped = line.strip()
    if stripped.startswith("{"):
        parsed = _parse_json(stripped)
        if parsed is not None:
            return parsed
    if "=" in stripped:
        parsed = _parse_logfmt(stripped)
        if parsed is not None:
            return parsed
    return _parse_text(line.rstrip("\r\n"))


def limit_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """Labels cut to the limits: long keys and values marked as truncated, excess keys dropped."""
    out: dict[str, Any] = {}
    size, dropped = 2, 0
    for key, value in labels.items():
        key = truncate(key, MAX_LABEL_KEY_CHARS)
        if isinstance(value, str):
            value = truncate(value, MAX_LABEL_VALUE_CHARS)
        elif isinstance(value, dict | list):
            text = json.dumps(value, ensure_ascii=False)
            if len(text) > MAX_LABEL_VALUE_CHARS:
                value = truncate(text, MAX_LABEL_VALUE_CHARS)
        cost = len(json.dumps({key: value}, ensure_ascii=False))
        if size + cost > MAX_LABELS_CHARS or dropped:
            dropped += 1
            continue
        out[key] = value
        size += cost
    if dropped:
        out["_truncated"] = f"{dropped} more labels dropped"
    return out


def _known(obj: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The keys ``obj`` holds its time, level and message under (None: it has none)."""
    tkey = lkey = mkey = None
    for key in _TIME_KEYS:
        if key in obj:
            tkey = key
            break
    for key in _LEVEL_KEYS:
        if key in obj:
            lkey = key
            break
    for key in _MSG_KEYS:
        if key in obj:
            mkey = key
            break
    return tkey, lkey, mkey


def _labels(obj: dict[str, Any], tkey: str | None, lkey: str | None, mkey: str) -> dict[str, Any]:
    """A copy of ``obj`` without the keys of its time, level and message, in its order."""
    out = obj.copy()
    del out[mkey]
    if tkey is not None:
        del out[tkey]
    if lkey is not None:
        del out[lkey]
    return out


def _json_object(text: str) -> Any:
    """``json.loads(text)`` (``text`` starts with ``{``); ValueError also for nesting deeper
    than ``MAX_JSON_DEPTH``."""
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deep")
    try:
        obj, end = _JSON_SCAN(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        return json.loads(text)  # trailing data: json's own verdict (whitespace, or an error)
    return obj


def _json_depth(text: str) -> int:
    """How deep brackets nest in ``text``, outside its JSON strings."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKETS.__getitem__, brackets)), default=0)


def _parse_json(text: str) -> Parsed | None:
    try:
        obj = _json_object(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    tkey, lkey, mkey = _known(obj)
    if mkey is None:
        message, labels = text, {}
    else:
        mraw = obj[mkey]
        message = mraw if isinstance(mraw, str) else json.dumps(mraw)
        labels = _labels(obj, tkey, lkey, mkey)
    when, stamp = _time_and_stamp(obj[tkey]) if tkey else (None, None)
    return Parsed(when, normalize_level(obj[lkey]) if lkey else "INFO", message, labels, stamp)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        if "\\" not in value:
            return value[1:-1]
        try:
            result: str = json.loads(value)
            return result
        except ValueError:
            return value[1:-1]
    return value


def _parse_logfmt(text: str) -> Parsed | None:
    pairs = {k: v if v[:1] != '"' else _unquote(v) for k, v in _LOGFMT.findall(text)}
    if _KNOWN_KEYS.isdisjoint(pairs):
        return None  # a plain sentence that merely contains '='
    tkey, lkey, mkey = _known(pairs)
    if tkey is None and mkey is None:
        return None
    when, stamp = _time_and_stamp(pairs[tkey]) if tkey else (None, None)
    return Parsed(
        when,
        normalize_level(pairs[lkey]) if lkey else "INFO",
        pairs[mkey] if mkey else text,
        _labels(pairs, tkey, lkey, mkey) if mkey else {},
        stamp,
    )


def _other_time(text: str, limit: int) -> tuple[datetime, int, int] | None:
    """A non-ISO timestamp: Apache/nginx ``[01/Dec/2026:14:05:03 +0000]`` within ``limit``
    characters (0: only at the start), else syslog's ``Dec  1 14:05:03`` or an epoch number
    at the start; (time, start, end)."""
    clf = _CLF.search(text, 0, limit + 40) if limit else _CLF.match(text)
    if clf:
        tz = clf["tz"] or "+0000"
        stamp = f"{clf['year']}-{_MONTHS.index(clf['mon']) + 1:02d}-{clf['day']}T{clf['clock']}"
        try:
            when = datetime.fromisoformat(f"{stamp}{tz[:3]}:{tz[3:]}").astimezone(UTC)
        except ValueError:
            return None
        return when, clf.start(), clf.end()
    syslog = _SYSLOG.match(text)
    if syslog:
        found = _syslog_time(syslog)
        return (found, syslog.start(), syslog.end()) if found else None
    epoch = _EPOCH.match(text)
    if epoch:
        found = parse_time(float(epoch["num"]))
        return (found, epoch.start(), epoch.end()) if found else None
    return None


def _syslog_time(match: re.Match[str]) -> datetime | None:
    """RFC 3164 has no year: this year, or last year for a date more than a day ahead."""
    frac = (match["frac"] or "0").ljust(6, "0")
    now = datetime.now(UTC)
    month, day = _MONTHS.index(match["mon"]) + 1, int(match["day"])
    hour, minute, second = (int(x) for x in match["clock"].split(":"))
    for year in (now.year, now.year - 1):
        try:
            when = datetime(year, month, day, hour, minute, second, int(frac), tzinfo=UTC)
        except ValueError:
            continue
        if (when - now).total_seconds() <= 86400:
            return when
    return None


def _parse_text(text: str) -> Parsed:
    """``<time> <LEVEL> message`` in the common orders; the timestamp may sit after a prefix.

    Timestamps: ISO 8601 within the first 64 characters, Apache/nginx ``[01/Dec/2026:...]``
    within about 100, syslog (``<PRI>`` then RFC 5424's ISO time or RFC 3164's
    ``Dec  1 14:05:03``) or an epoch number at the start. A syslog ``<PRI>``'s severity is the
    level.
    """
    when = None
    level = None
    pri = _PRI.match(text)
    if pri:
        level = _SEVERITY[int(pri["pri"]) % 8]
        text = text[pri.end() :]
    rest = text
    match = _ISO_TEXT.search(text, 0, 64)
    if match:
        when = _from_match(match)
        if when is not None:
            rest = _cut(text, match.start(), match.end())
    if when is None:
        other = _other_time(text, 64)
        if other is not None:
            when = other[0]
            rest = _cut(text, other[1], other[2])
    if level is None:
        level = "INFO"
        lmatch = _LEVEL_WORD.search(rest, 0, 48)
        if lmatch:
            level = _ALIASES[lmatch.group(1)]
            rest = _cut(rest, lmatch.start(), lmatch.end())
    if when is None:
        rest = text  # untouched: no timestamp means we cannot be sure what a prefix is
    return Parsed(when, level, rest)


def _cut(text: str, start: int, end: int) -> str:
    """``text`` without ``text[start:end]``, joined by one space."""
    return f"{text[:start].rstrip()} {text[end:].lstrip()}".strip()
