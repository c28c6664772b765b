"""Alembic migrations of the job store (run by service.store.upgrade_to_head)."""
