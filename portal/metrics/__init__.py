"""Metrics: the Prometheus query client and file_sd scrape targets from the inventory."""
