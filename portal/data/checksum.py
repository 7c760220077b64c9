"""File checksums as ``algorithm:hexdigest`` text, computed here or by the site's own tool."""

from __future__ import annotations

import hashlib
import re
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
#: The same algorithms' names for ``openssl dgst`` (hardware-accelerated where the CPU has it).
OPENSSL = {
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
    "blake2b": "blake2b512",
}
DEFAULT = "sha256"
CHUNK = 4 << 20
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGITS = {algo: hashlib.new(algo).digest_size * 2 for algo in TOOLS}


def parse(text: str) -> tuple[str, str]:
    """``("sha256", "ab12...")`` from ``"sha256:ab12..."``; one clear error otherwise."""
    if not isinstance(text, str):
        raise PortalError("a checksum must be text like sha256:HEX")
    algo, sep, digest = text.strip().partition(":")
    algo = algo.lower()
    if not sep or algo not in TOOLS or not _HEX.fullmatch(digest):
        raise PortalError(
            f"checksum {text[:80]!r} is not ALGORITHM:HEX with ALGORITHM one of {', '.join(TOOLS)}"
        )
    if len(digest) != _DIGITS[algo]:
        raise PortalError(f"checksum {text[:80]!r}: a {algo} digest has {_DIGITS[algo]} hex digits")
    return algo, digest.lower()


def is_hex(text: str) -> bool:
    return bool(_HEX.fullmatch(text))


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
