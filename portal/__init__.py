"""obsportal: observability, operations and quicklooks for a radio telescope's pipeline cluster.

Plugins implement the hooks of ``portal.hookspecs`` with ``@portal.hookimpl`` and declare the
role a route, Dash callback or command needs with ``@portal.requires("operator")``.
"""

from portal.auth.roles import requires
from portal.hookspecs import hookimpl

__all__ = ["hookimpl", "requires"]
__version__ = "0.1.0"
