#!/usr/bin/env bash
# Install everything, then run the whole suite: ruff (lint + format check),
# mypy on the core, the import-layer contract, and pytest with coverage
# against real PostgreSQL, sshd/SFTP and restic.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/services.sh

export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff check"; ruff check .
echo "==> ruff format --check"; ruff format --check .
echo "==> mypy (core and every plugin)"; mypy
echo "==> lint-imports"; lint-imports
echo "==> pytest (2 workers: most tests wait on tools and servers, not the CPU)"
pytest -n 2 --cov --cov-report=term --durations=15 "$@"
