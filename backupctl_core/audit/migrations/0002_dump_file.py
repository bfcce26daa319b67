"""backup_log.dump_file: the dump a run produced, so crash recovery can tell a
successful run's dump from one a crashed or failed run left behind."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("backup_log", "dump_file", CharField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("backup_log", "dump_file"))
