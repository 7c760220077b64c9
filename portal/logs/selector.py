"""A LogQL-style selector parser: ``{host="cn07",component=~"l1.*"} |= "dropped"``.

Only the log-query subset is accepted (stream matchers and line filters), so Loki users' habits
work against PostgreSQL too. Errors name the problem and point at the offending character.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field

from portal.errors import PortalError

MATCH_OPS = ("=~", "!~", "!=", "=")  # longest first
LINE_OPS = ("|=", "!=", "|~", "!~")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SelectorError(PortalError):
    """A selector that does not parse; the message ends with the text and a caret under it."""

    def __init__(self, text: str, pos: int, problem: str) -> None:
        self.text, self.pos, self.problem = text, pos, problem
        super().__init__(
            f"bad selector at character {pos + 1}: {problem}\n  {text}\n  {' ' * pos}^"
        )


@dataclass(frozen=True)
class Matcher:
    """``label op "value"``; regex matchers match the whole value, as in LogQL."""

    label: str
    op: str
    value: str


@dataclass(frozen=True)
class LineFilter:
    """``|= "text"``, ``!= "text"``, ``|~ "regex"``, ``!~ "regex"`` on the message."""

    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...] = ()
    filters: tuple[LineFilter, ...] = field(default_factory=tuple)

    def logql(self) -> str:
        """The selector written back as LogQL (for ``--source loki``)."""
        inner = ",".join(f"{m.label}{m.op}{json.dumps(m.value)}" for m in self.matchers)
        stages = "".join(f" {f.op} {json.dumps(f.value)}" for f in self.filters)
        return "{" + inner + "}" + stages


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, problem: str, pos: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if pos is None else pos, problem)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def expect(self, token: str, what: str) -> None:
        if not self.peek(token):
            raise self.fail(f"expected {what}{self._found()}")
        self.pos += len(token)

    def _found(self) -> str:
        if self.pos >= len(self.text):
            return ", found the end of the selector"
        return f", found {self.text[self.pos]!r}"

    def ident(self) -> str:
        self.skip()
        match = _IDENT.match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected a label name such as host or component{self._found()}")
        self.pos = match.end()
        return match.group()

    def op(self, ops: tuple[str, ...], what: str) -> str:
        self.skip()
        for op in ops:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        raise self.fail(f"expected {what}{self._found()}")

    def string(self) -> tuple[str, int]:
        """A double-quoted (with escapes) or back-quoted (raw) string, and where it started."""
        self.skip()
        start = self.pos
        if self.pos >= len(self.text) or self.text[self.pos] not in '"`':
            raise self.fail(f'expected a quoted string such as "cn07"{self._found()}')
        quote = self.text[self.pos]
        i = self.pos + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                raw = self.text[self.pos : i + 1]
                self.pos = i + 1
                if quote == "`":
                    return raw[1:-1], start
                try:
                    value: str = json.loads(raw)
                except ValueError:
                    raise self.fail("invalid escape sequence in string", start) from None
                return value, start
            i += 1
        raise self.fail("unterminated string (missing closing quote)", start)


#: Deepest group nesting a regex may have (a pattern nested hundreds deep is an attack, not a
#: query: it would exhaust the parser's stack).
MAX_REGEX_DEPTH = 50


def _depth(value: str) -> int:
    """How deeply ``(`` groups nest in ``value`` (escaped and bracketed parentheses skipped)."""
    depth = deepest = 0
    i, in_class = 0, False
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
        i += 1
    return deepest


def _check_regex(p: _Parser, value: str, at: int) -> None:
    if _depth(value) > MAX_REGEX_DEPTH:
        raise p.fail(f"regular expression nested more than {MAX_REGEX_DEPTH} groups deep", at)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(value)
    except re.error as exc:
        raise p.fail(f"invalid regular expression ({exc.msg})", at) from None
    except RecursionError:
        raise p.fail("regular expression nested too deeply", at) from None


def parse(text: str) -> Selector:
    """Parse ``{matchers} filters...``; a bare filter list (``|= "x"``) is accepted too."""
    p = _Parser(text)
    matchers: list[Matcher] = []
    if not text.strip():
        raise p.fail("the selector is empty")
    if p.peek("{"):
        p.pos += 1
        if not p.peek("}"):
            while True:
                label = p.ident()
                op = p.op(MATCH_OPS, "one of = != =~ !~ after the label name")
                value, at = p.string()
                if op in ("=~", "!~"):
                    _check_regex(p, value, at)
                matchers.append(Matcher(label, op, value))
                if p.peek(","):
                    p.pos += 1
                    continue
                break
        p.expect("}", "',' or '}'")
    filters: list[LineFilter] = []
    while True:
        p.skip()
        if p.pos >= len(p.text):
            break
        op = p.op(LINE_OPS, "a line filter (|= != |~ !~) or the end of the selector")
        value, at = p.string()
        if op in ("|~", "!~"):
            _check_regex(p, value, at)
        filters.append(LineFilter(op, value))
    return Selector(tuple(matchers), tuple(filters))
