"""File checksums as ``algorithm:hexdigest`` text, computed here or by the site's own tool."""

from __future__ import annotations

import hashlib
from pathlib import Path

from portal.errors import PortalError

#: Algorithms a checksum may name, and the coreutils program that computes it at a site.
TOOLS = {
    "md5": "md5sum",
    "sha1": "sha1sum",
    "sha256": "sha256sum",
    "sha512": "sha512sum",
    "blake2b": "b2sum",
}
DEFAULT = "sha256"
CHUNK = 4 << 20


def parse(text: str) -> tuple[str, str]:
    """``("sha256", "ab12...")`` from ``"sha256:ab12..."``; one clear error otherwise."""
    algo, sep, digest = text.strip().partition(":")
    algo = algo.lower()
    if (
        not sep
        or algo not in TOOLS
        or not digest
        or any(c not in "0123456789abcdef" for c in digest.lower())
    ):
        raise PortalError(
            f"checksum {text[:80]!r} is not ALGORITHM:HEX with ALGORITHM one of {', '.join(TOOLS)}"
        )
    expected = hashlib.new(algo).digest_size * 2
    if len(digest) != expected:
        raise PortalError(f"checksum {text[:80]!r}: a {algo} digest has {expected} hex digits")
    return algo, digest.lower()


def normalise(text: str) -> str:
    algo, digest = parse(text)
    return f"{algo}:{digest}"


def of_file(path: Path, algo: str = DEFAULT) -> str:
    """The checksum of a local file (hashlib releases the GIL: threads hash in parallel)."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"
