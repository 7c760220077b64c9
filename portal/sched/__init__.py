"""Backlog-driven batch scheduling on an existing orchestrator (Slurm)."""
