"""Grafana as code: dashboard sources -> provisioning JSON/YAML, and the panel-query harness."""
