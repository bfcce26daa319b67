"""Create backup_log with every column of SPEC's audit schema.

A frozen copy of the model, independent of ``audit.models``, so later changes
to the application model never rewrite history.
"""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)


def up(migrator, db):
    class BackupLog(Model):
        id = UUIDField(primary_key=True)
        project_name = CharField(max_length=255, index=True)
        status = CharField(max_length=16, index=True)
        current_stage = CharField(max_length=64, null=True)
        started_at = DateTimeField(index=True)
        completed_at = DateTimeField(null=True)
        dump_size_bytes = BigIntegerField(null=True)
        encrypted = BooleanField(default=False)
        verified = BooleanField(default=False)
        snapshot_id = CharField(max_length=128, null=True)
        snapshot_mode = CharField(max_length=16, null=True)
        files_new = IntegerField(null=True)
        files_changed = IntegerField(null=True)
        bytes_added = BigIntegerField(null=True)
        prune_snapshots_removed = IntegerField(null=True)
        local_files_cleaned = IntegerField(null=True)
        error_stage = CharField(max_length=64, null=True)
        error_message = TextField(null=True)
        retry_count = IntegerField(default=0)
        duration_ms = BigIntegerField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "backup_log"

    db.create_tables([BackupLog])
    db.execute_sql(
        "CREATE INDEX backup_log_project_started ON backup_log (project_name, started_at)"
    )


def down(migrator, db):
    db.execute_sql("DROP TABLE backup_log")
