"""The inventory of hosts and components (``registry``), and ``portal hosts``."""
