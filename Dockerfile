# backupctl: the service and CLI (`docker exec backupctl backupctl <command>`).
FROM python:3.11-slim-bookworm

# Run-time tools: the same list scripts/install.sh installs (one source of truth).
COPY scripts/packages.txt /tmp/packages.txt
RUN apt-get update \
 && grep -v '^\s*#' /tmp/packages.txt | awk 'NF {print $1}' \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*

# pg_dump must be as new as the server it dumps: the newest PostgreSQL client (or
# PG_CLIENT_MAJOR) from the PostgreSQL project's repository, beside Debian's 15 above.
# The postgres plugin picks, per server, a pg_dump from /usr/lib/postgresql/N/bin.
ARG PG_CLIENT_MAJOR=
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
 && curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    | gpg --dearmor -o /usr/share/keyrings/postgresql.gpg \
 && echo "deb [ signed-by=/usr/share/keyrings/postgresql.gpg ] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
    > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && newest="$(apt-cache search --names-only '^postgresql-client-[0-9]+$' \
    | sed -E 's/^postgresql-client-([0-9]+) .*/\1/' | sort -n | tail -1)" \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_CLIENT_MAJOR:-$newest}" \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

# MongoDB Database Tools (mongodump/mongorestore) are not in Debian: MongoDB's repository.
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
 && curl -fsSL https://pgp.mongodb.com/server-7.0.asc \
    | gpg --dearmor -o /usr/share/keyrings/mongodb-server-7.0.gpg \
 && echo "deb [ signed-by=/usr/share/keyrings/mongodb-server-7.0.gpg ] https://repo.mongodb.org/apt/debian bookworm/mongodb-org/7.0 main" \
    > /etc/apt/sources.list.d/mongodb-org-7.0.list \
 && apt-get update && apt-get install -y --no-install-recommends mongodb-database-tools \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY backupctl_core ./backupctl_core
COPY plugins ./plugins
RUN pip install --no-cache-dir . \
    plugins/backupctl-postgres plugins/backupctl-mysql plugins/backupctl-mongo \
    plugins/backupctl-restic plugins/backupctl-slack plugins/backupctl-email \
    plugins/backupctl-webhook plugins/backupctl-sqlite \
    plugins/backupctl-uptime-kuma plugins/backupctl-healthchecks plugins/backupctl-borg

# Runs as root: SPEC mounts the SSH keys at /root/.ssh (read-only) and asset
# paths with their owners' modes; a non-root user could not read either.
ENV BACKUPCTL_CONFIG=/app/config/projects.yml \
    BACKUP_BASE_DIR=/data/backups \
    GPG_KEYS_DIR=/app/gpg-keys \
    APP_HOST=0.0.0.0 \
    APP_PORT=3100 \
    PYTHONUNBUFFERED=1
VOLUME ["/data/backups"]
EXPOSE 3100
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('APP_PORT', '3100'), timeout=8)"
# serve: migrations, crash recovery, GPG key import, scheduler, HTTP endpoints.
CMD ["backupctl", "serve"]
