"""obsportal: observability, operations and quicklooks for a radio telescope's pipeline cluster."""

__version__ = "0.1.0"
