#!/usr/bin/env bash
# Install everything backupctl needs on a fresh Debian/Ubuntu machine:
# the Debian packages in scripts/packages*.txt, then a virtualenv in .venv with
# the core and every plugin in this repository (editable), plus test tools.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(cat scripts/packages.txt scripts/packages-test.txt | grep -v '^\s*#' | awk 'NF {print $1}')
missing=()
for pkg in $packages; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
plugins=()
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && plugins+=(-e "$dir")
done
echo "==> pip install backupctl-core and $(( ${#plugins[@]} / 2 )) plugin(s)"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]" "${plugins[@]}" 2>&1 \
  | grep -v -e "is ignored: it is neither a file nor a directory" || true
.venv/bin/backupctl --version
