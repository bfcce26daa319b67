"""The audit store: every run as a ``backup_log`` row (peewee; SQLite or PostgreSQL)."""
