"""Call-site checks for metric names, label names and label values (docs/metrics.md contract).

A component that passes a bad name gets a ``PortalError`` naming the offending thing at the
line that made the mistake, instead of a silently dropped series or a broken scrape later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from portal.errors import PortalError

PREFIX = "obs_"
METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Labels the library sets itself; ``le``/``quantile`` belong to histograms and summaries.
RESERVED_LABELS = frozenset({"host", "component", "job", "instance", "le", "quantile"})
MAX_LABEL_VALUE = 200


class TelemetryError(PortalError, ValueError):
    """A component used the telemetry library wrongly; the message names what and where."""


def check_metric_name(name: str, kind: str) -> None:
    """Prometheus syntax, the ``obs_`` prefix, and ``_total`` exactly on counters."""
    if not isinstance(name, str) or not METRIC_RE.match(name):
        raise TelemetryError(
            f"metric name {name!r} is malformed: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if not name.startswith(PREFIX) or name == PREFIX:
        raise TelemetryError(f"metric name {name!r} must start with {PREFIX!r}")
    if name != name.lower():
        raise TelemetryError(f"metric name {name!r} must be lower case")
    if kind == "counter" and not name.endswith("_total"):
        raise TelemetryError(f"counter {name!r} must end with '_total'")
    if kind != "counter" and name.endswith("_total"):
        raise TelemetryError(f"{kind} {name!r} must not end with '_total' (only counters do)")
    if kind == "histogram" and name.endswith(("_bucket", "_count", "_sum")):
        raise TelemetryError(f"histogram {name!r} must not end with _bucket, _count or _sum")


def check_label_names(metric: str, names: Iterable[str]) -> tuple[str, ...]:
    """Valid, unique, not reserved; returns them as a tuple."""
    out: list[str] = []
    for label in names:
        if not isinstance(label, str) or not LABEL_RE.match(label) or label.startswith("__"):
            raise TelemetryError(f"metric {metric!r}: label name {label!r} is malformed")
        if label in RESERVED_LABELS:
            raise TelemetryError(
                f"metric {metric!r}: label name {label!r} is reserved (set by the library)"
            )
        if label in out:
            raise TelemetryError(f"metric {metric!r}: label name {label!r} given twice")
        out.append(label)
    return tuple(out)


def check_label_value(metric: str, label: str, value: object) -> str:
    """Strings (or ints) of printable characters, at most ``MAX_LABEL_VALUE`` long.

    ``metric`` names the owner in messages; ``""`` means the telemetry object itself.
    """
    owner = f"metric {metric!r}" if metric else "telemetry"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TelemetryError(f"{owner}: label {label}={value!r} must be a string or an integer")
    text = str(value)
    if text == "":
        raise TelemetryError(f"{owner}: label {label!r} has an empty value")
    if len(text) > MAX_LABEL_VALUE:
        raise TelemetryError(
            f"{owner}: label {label!r} value is {len(text)} characters (at most {MAX_LABEL_VALUE})"
        )
    if not text.isprintable():
        raise TelemetryError(f"{owner}: label {label}={text!r} contains control characters")
    return text


def check_labels(metric: str, expected: tuple[str, ...], given: Mapping[str, object]) -> tuple:
    """The label values in declaration order; missing or unknown labels are named."""
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unknown {', '.join(extra)}")
        want = ", ".join(expected) or "no labels"
        raise TelemetryError(f"metric {metric!r}: {'; '.join(parts)} (declared: {want})")
    return tuple(check_label_value(metric, n, given[n]) for n in expected)


def check_value(metric: str, value: object, non_negative: bool = False) -> float:
    """A finite number (non-negative for counter increments)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryError(f"metric {metric!r}: value {value!r} is not a number")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise TelemetryError(f"metric {metric!r}: value {value!r} is not finite")
    if non_negative and number < 0:
        raise TelemetryError(f"counter {metric!r}: increment {value!r} is negative")
    return number
