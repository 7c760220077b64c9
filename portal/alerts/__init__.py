"""Alert delivery: Alertmanager's webhook into ``portal.events`` (topic ``alert``), and queries."""
