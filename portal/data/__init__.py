"""Data products: producer API, catalog, storage accounting, replication rules, transfers."""
