"""Restore drills: a ``drill_log`` table of their own, so no query about backups
(status, metrics, the daily summary, crash recovery) can count a drill as one;
and ``backup_log.manifest_file``, the dump's manifest stored beside it."""

from peewee import BigIntegerField, CharField, DateTimeField, Model, TextField, UUIDField


def up(migrator, db):
    class DrillLog(Model):
        id = UUIDField(primary_key=True)
        project_name = CharField(max_length=255)
        status = CharField(max_length=16)
        snapshot_id = CharField(max_length=128, null=True)
        started_at = DateTimeField()
        completed_at = DateTimeField(null=True)
        duration_ms = BigIntegerField(null=True)
        restored_bytes = BigIntegerField(null=True)
        scratch_database = CharField(max_length=128, null=True)
        checks = TextField()  # JSON: [{name, status, detail}]
        error_message = TextField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "drill_log"

    db.create_tables([DrillLog])
    db.execute_sql(
        "CREATE INDEX drill_log_project_status_started"
        " ON drill_log (project_name, status, started_at)"
    )
    migrator.migrate(migrator.add_column("backup_log", "manifest_file", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("backup_log", "manifest_file"))
    db.execute_sql("DROP TABLE drill_log")
