"""Logs: the store's write side, queries, selector parser, formatting and the Loki client."""
