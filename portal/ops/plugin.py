"""The ops capability's hook implementations."""

from __future__ import annotations
