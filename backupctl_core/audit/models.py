"""The peewee model of the ``backup_log`` table (schema: migrations/)."""

from __future__ import annotations

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)


class BackupLog(Model):
    id = UUIDField(primary_key=True)
    project_name = CharField(max_length=255)
    status = CharField(max_length=16)
    current_stage = CharField(max_length=64, null=True)
    started_at = DateTimeField()
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
    dump_file = CharField(null=True)  # migration 0002: not in SPEC's schema
    warning_message = TextField(null=True)  # migration 0003: not in SPEC's schema
    pruned_at = DateTimeField(null=True)  # migration 0005: not in SPEC's schema
    prune_deferred_until = DateTimeField(null=True)  # migration 0005
    manifest_file = TextField(null=True)  # migration 0006: not in SPEC's schema
    hostname = CharField(max_length=255, null=True)  # migration 0007: the run's replica
    pid = IntegerField(null=True)  # migration 0007

    class Meta:
        table_name = "backup_log"


class DrillLog(Model):
    """One restore drill (migration 0006); never a backup run."""

    id = UUIDField(primary_key=True)
    project_name = CharField(max_length=255)
    status = CharField(max_length=16)
    snapshot_id = CharField(max_length=128, null=True)
    started_at = DateTimeField()
    completed_at = DateTimeField(null=True)
    duration_ms = BigIntegerField(null=True)
    restored_bytes = BigIntegerField(null=True)
    scratch_database = CharField(max_length=128, null=True)
    checks = TextField()
    error_message = TextField(null=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "drill_log"


class FleetClaim(Model):
    """A scheduled job's tick, claimed by the one replica that runs it (migration 0007)."""

    job = CharField(max_length=300)
    tick_at = DateTimeField()
    hostname = CharField(max_length=255)
    pid = IntegerField()
    claimed_at = DateTimeField()

    class Meta:
        table_name = "fleet_claim"
        primary_key = CompositeKey("job", "tick_at")


class FleetReplica(Model):
    """A ``serve`` replica's heartbeat (migration 0007)."""

    replica = CharField(max_length=300, primary_key=True)
    hostname = CharField(max_length=255)
    pid = IntegerField()
    base_dir = CharField(max_length=4096)
    started_at = DateTimeField()
    last_seen = DateTimeField()

    class Meta:
        table_name = "fleet_replica"
