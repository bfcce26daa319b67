"""An index for what ``GET /metrics`` reads on every scrape, per project: the newest
run of a status (one seek from the end) and the number of runs per status (counted
in the index, without reading the rows)."""


def up(migrator, db):
    db.execute_sql(
        "CREATE INDEX backup_log_project_status_started"
        " ON backup_log (project_name, status, started_at)"
    )


def down(migrator, db):
    db.execute_sql("DROP INDEX backup_log_project_status_started")
