"""obsportal: observability, operations and quicklooks for a radio telescope's pipeline cluster.

Plugins implement the hooks of ``portal.hookspecs`` with ``@portal.hookimpl``.
"""

from portal.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
