"""The event bus: rows in ``events`` plus LISTEN/NOTIFY (``bus``), and ``portal events``."""
