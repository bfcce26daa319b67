"""backup_log.warning_message: what a successful run did not do as configured
(e.g. an asset path that did not exist), so ``status``, ``logs`` and the daily
summary can say "success, but …" instead of a plain success."""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("backup_log", "warning_message", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("backup_log", "warning_message"))
