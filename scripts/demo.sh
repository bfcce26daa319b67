#!/usr/bin/env bash
# A real backup on the embedded defaults, no database server needed:
# a bundled SQLite database and an asset folder are backed up to a local restic
# repository, recorded in the SQLite audit store, then shown with `status`,
# `logs` and `snapshots`. Everything lives in ./demo-data (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing what the demo needs (first time: a minute; then: seconds)"
bash scripts/install.sh --demo
export PATH="$PWD/.venv/bin:$PATH"

DEMO="$PWD/demo-data"
mkdir -p "$DEMO/assets/uploads" "$DEMO/config"
python3 - "$DEMO/shop.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("""
CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY,
  customer_id INTEGER REFERENCES customers(id), total_cents INTEGER, note TEXT);
""")
if db.execute("SELECT count(*) FROM customers").fetchone()[0] == 0:
    db.executemany("INSERT INTO customers (name, email) VALUES (?, ?)",
                   [(f"Kundin {i} ✓", f"c{i}@example.com") for i in range(500)])
    db.executemany("INSERT INTO orders (customer_id, total_cents, note) VALUES (?, ?, ?)",
                   [(i % 500 + 1, i * 137 % 10000, "🚚 express" if i % 7 == 0 else None)
                    for i in range(2000)])
db.commit()
PY
echo "invoice 2026-001" > "$DEMO/assets/uploads/invoice-001.txt"
head -c 200000 /dev/urandom > "$DEMO/assets/uploads/photo.bin"

cat > "$DEMO/config/projects.yml" <<YML
projects:
  - name: demo-shop
    database:
      type: sqlite
      name: $DEMO/shop.sqlite
    assets:
      paths: [$DEMO/assets/uploads]
    restic:
      repository_path: $DEMO/restic-repo
      snapshot_mode: combined
    retention:
      local_days: 7
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 6
YML
if [ ! -f "$DEMO/.env" ]; then
  cat > "$DEMO/.env" <<ENV
BACKUP_BASE_DIR=$DEMO/backups
RESTIC_PASSWORD=demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TIMEZONE=Europe/Berlin
NOTIFICATION_TYPE=none
ENV
  chmod 600 "$DEMO/.env"
fi

export BACKUPCTL_CONFIG="$DEMO/config/projects.yml" BACKUPCTL_ENV_FILE="$DEMO/.env"
set -x
backupctl plugins
backupctl config validate
backupctl db migrate
backupctl run demo-shop
backupctl status
backupctl logs demo-shop --last 1
backupctl snapshots demo-shop
backupctl drill demo-shop                           # prove the snapshot imports
