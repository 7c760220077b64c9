"""``@describe``: what a REST route takes and answers, for the generated OpenAPI document.

Kept outside ``portal.web`` (like ``portal.routes``) so capabilities describe their blueprints
without importing the web app; ``portal.web.openapi`` reads these marks from the ``url_map``.
A route without one still appears there, with a generic JSON answer and the one error body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

ATTR = "portal_openapi"
STRING: Mapping[str, Any] = {"type": "string"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Param:
    """One query, path or header parameter; ``repeat``: given several times (``?host=a&host=b``)."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=lambda: dict(STRING))
    description: str = ""
    where: str = "query"
    required: bool = False
    repeat: bool = False


@dataclass(frozen=True)
class Media:
    """An answer in media types other than JSON: ``{media type: schema}`` and what it is."""

    types: Mapping[str, Mapping[str, Any]]
    description: str = ""


@dataclass(frozen=True)
class Description:
    """What ``@describe`` stores on a view."""

    summary: str = ""
    params: Sequence[Param] = ()
    body: Mapping[str, Any] | None = None
    responses: Mapping[int, Mapping[str, Any] | Media] = field(default_factory=dict)
    tags: Sequence[str] = ()


def describe(
    summary: str = "",
    *,
    params: Sequence[Param] = (),
    body: Mapping[str, Any] | None = None,
    responses: Mapping[int, Mapping[str, Any] | Media] | None = None,
    tags: Sequence[str] = (),
) -> Callable[[F], F]:
    """Describe a route: parameters, JSON ``body`` schema, and successful answers by status (a
    JSON schema, or ``Media``). Errors need no entry: every one has the same JSON body."""
    desc = Description(summary, tuple(params), body, dict(responses or {}), tuple(tags))

    def mark(view: F) -> F:
        setattr(view, ATTR, desc)
        return view

    return mark


def description_of(view: Any) -> Description | None:
    """The ``@describe`` of ``view``, following ``functools.wraps`` chains; None if absent."""
    while view is not None:
        found = getattr(view, ATTR, None)
        if isinstance(found, Description):
            return found
        view = getattr(view, "__wrapped__", None)
    return None
