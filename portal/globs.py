"""Shell-style globs (``cn*``, ``l1-beam?``) as SQL LIKE patterns: the one converter for every
filter a user types (log hosts and components, audit actors, event topics)."""

from __future__ import annotations


def like_pattern(glob: str, always: bool = False) -> str | None:
    """The LIKE pattern (escape character ``\\``) for ``glob``; None when it has no wildcard
    (so the caller can use equality, index-friendly) unless ``always``."""
    if not always and not any(ch in glob for ch in "*?"):
        return None
    like = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return like.replace("*", "%").replace("?", "_")
