#!/usr/bin/env bash
# deps.sh - install the Debian packages libuow needs to build and test.
#
# Idempotent: every package is checked with `dpkg -s`; apt-get runs (one
# `update`, one `install`) only when something is missing. Safe under CI
# (CI=true, no stdin): apt runs non-interactively. Uses sudo only when not root.
set -euo pipefail

PACKAGES=(
  build-essential
  cmake
  pkg-config
  clang
  libclang-rt-14-dev
  libsqlite3-dev
  sqlite3
  libpq-dev
  postgresql-15
  redis-server
  libhiredis-dev
  libcmocka-dev
  libinih-dev
  valgrind
  python3
  python3-sqlalchemy
  python3-psycopg2
  gnuplot-nox
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # "install ok installed" is the only usable state: dpkg -s also succeeds
  # for packages removed but not purged (state "deinstall ok config-files").
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "deps: missing: ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: apt-get not found; install the packages above by hand" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    # -n: never prompt (CI has no stdin); fail instead.
    SUDO=(sudo -n)
  else
    echo "deps: not root and sudo is not available; install the packages above as root" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install "${APT_OPTS[@]}" --no-install-recommends "${missing[@]}" </dev/null

echo "deps: installed ${missing[*]}"
