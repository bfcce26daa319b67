"""backup_log.pruned_at and .prune_deferred_until: whether a run reclaimed the space
of forgotten snapshots (``restic prune``) and when, or until when it deferred that
(``retention.prune_interval``). The newest ``pruned_at`` of a project is its last
prune, so the interval holds across restarts; the index makes that one seek (the
runs since then are found on 0004's index).

Earlier rows that forgot snapshots did prune (ours pruned whenever forget removed
something, the original tool ran ``restic forget --prune``): their ``pruned_at`` is
the run's end, so the first run after the upgrade counts from them."""

from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("backup_log", "pruned_at", DateTimeField(null=True)),
        migrator.add_column("backup_log", "prune_deferred_until", DateTimeField(null=True)),
    )
    db.execute_sql(
        "UPDATE backup_log SET pruned_at = COALESCE(completed_at, started_at)"
        " WHERE prune_snapshots_removed > 0"
    )
    db.execute_sql("CREATE INDEX backup_log_project_pruned ON backup_log (project_name, pruned_at)")


def down(migrator, db):
    db.execute_sql("DROP INDEX backup_log_project_pruned")
    migrator.migrate(
        migrator.drop_column("backup_log", "prune_deferred_until"),
        migrator.drop_column("backup_log", "pruned_at"),
    )
