"""The one way to show a URL: passwords hidden wherever a URL is printed, logged or returned."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAMS = {"password", "sslpassword"}  # libpq also takes these as query parameters


def redact_url(url: str) -> str:
    """``scheme://user:***@host/...`` (and ``?password=***``); other URLs come back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = "&".join(
        f"{pair.partition('=')[0]}={MASK}"
        if pair.partition("=")[0].lower() in _SECRET_PARAMS
        else pair
        for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
