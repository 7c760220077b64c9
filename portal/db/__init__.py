"""Database access: one engine factory, Core tables, migrations and the batched write path."""
