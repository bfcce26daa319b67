#!/usr/bin/env bash
# Start the services tests need when they are not already running. Tests start
# their own password-protected PostgreSQL cluster and sshd; this only makes
# sure the machine's PostgreSQL (used by audit-store tests) is up.
set -euo pipefail
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
mkdir -p /run/sshd
