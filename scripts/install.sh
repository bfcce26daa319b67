#!/usr/bin/env bash
# Install what backupctl needs on a fresh Debian/Ubuntu machine: the Debian packages
# in scripts/packages*.txt, then a virtualenv in .venv with the core and the plugins
# in this repository (editable).
#
#   bash scripts/install.sh          everything, test tools included (scripts/test.sh)
#   bash scripts/install.sh --demo   only what the demo runs: the run-time packages,
#                                    the core and the sqlite and restic plugins
#
# Safe to run again: it installs only what is missing, and skips pip entirely when
# no pyproject.toml changed since the last install of the same kind.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
lists=(scripts/packages.txt)
[ "$mode" = "--demo" ] || lists+=(scripts/packages-test.txt)
packages=$(cat "${lists[@]}" | grep -v '^\s*#' | awk 'NF {print $1}')
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
if [ "$mode" = "--demo" ]; then
  targets=(-e . -e plugins/backupctl-sqlite -e plugins/backupctl-restic)
else
  targets=(-e ".[test]")
  for dir in plugins/*/; do
    [ -f "$dir/pyproject.toml" ] && targets+=(-e "$dir")
  done
fi
# What was installed last, by kind: the same targets and unchanged pyproject files
# need no pip run (a re-run of the demo takes seconds, not a minute).
stamp=".venv/.backupctl-install${mode/--/-}"
wanted=$(printf '%s\n' "${targets[@]}" | cat - pyproject.toml plugins/*/pyproject.toml | sha256sum)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/backupctl ]; then
  echo "==> Python packages up to date"
else
  echo "==> pip install: $(( ${#targets[@]} / 2 )) distribution(s) ($mode)"
  .venv/bin/pip install -q --disable-pip-version-check "${targets[@]}" 2>&1 \
    | grep -v -e "is ignored: it is neither a file nor a directory" || true
  echo "$wanted" > "$stamp"
fi
.venv/bin/backupctl --version
