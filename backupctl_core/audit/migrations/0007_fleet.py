"""Fleet mode (several hosts, one audit store; docs/fleet.md):

- ``backup_log.hostname`` and ``.pid``: which replica ran each run (null on older
  rows and on the original tool's);
- ``fleet_claim``: one row per scheduled job and tick; its primary key makes the
  replica that inserts it the only one that runs that tick;
- ``fleet_replica``: each ``serve`` replica's heartbeat, read by ``health``."""

from peewee import CharField, CompositeKey, DateTimeField, IntegerField, Model


def up(migrator, db):
    class FleetClaim(Model):
        job = CharField(max_length=300)
        tick_at = DateTimeField()
        hostname = CharField(max_length=255)
        pid = IntegerField()
        claimed_at = DateTimeField()

        class Meta:
            database = db
            table_name = "fleet_claim"
            primary_key = CompositeKey("job", "tick_at")

    class FleetReplica(Model):
        replica = CharField(max_length=300, primary_key=True)  # "<hostname> <pid>"
        hostname = CharField(max_length=255)
        pid = IntegerField()
        base_dir = CharField(max_length=4096)
        started_at = DateTimeField()
        last_seen = DateTimeField()

        class Meta:
            database = db
            table_name = "fleet_replica"

    db.create_tables([FleetClaim, FleetReplica])
    migrator.migrate(
        migrator.add_column("backup_log", "hostname", CharField(max_length=255, null=True)),
        migrator.add_column("backup_log", "pid", IntegerField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("backup_log", "pid"),
        migrator.drop_column("backup_log", "hostname"),
    )
    db.execute_sql("DROP TABLE fleet_replica")
    db.execute_sql("DROP TABLE fleet_claim")
