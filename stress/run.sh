#!/usr/bin/env bash
# stress/run.sh - what `make stress` runs: the enrollment stress program
# (stress/stress.c) on a SQLite file (WAL) and on a throwaway PostgreSQL that
# this script starts in its work directory and always stops, then a short run
# of the sanitizer build on each store, whose LeakSanitizer checks every
# worker and the relay as they exit. Every run happens even when one fails;
# the exit status is non-zero if any failed.
#
# Environment:
#   STRESS_BIN           the release build's stress_enrollment (required)
#   STRESS_ASAN_BIN      the ASan+UBSan build's stress_enrollment; empty: no leak run
#   STRESS_OUT           where the work directory goes (default: STRESS_BIN's directory)
#   STRESS_SECONDS       how long the workers run, per store (default 60)
#   STRESS_PROCS         worker processes (default 8)
#   STRESS_STORES        which stores (default "sqlite pg")
#   STRESS_ASAN_SECONDS  length of the sanitizer runs (default 5; 0 skips them)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${STRESS_BIN:?STRESS_BIN must name the stress_enrollment program}
ASAN_BIN=${STRESS_ASAN_BIN:-}
OUT=${STRESS_OUT:-$(dirname "$BIN")}
SECONDS_PER_RUN=${STRESS_SECONDS:-60}
PROCS=${STRESS_PROCS:-8}
STORES=${STRESS_STORES:-sqlite pg}
ASAN_SECONDS=${STRESS_ASAN_SECONDS:-5}

say() { echo "stress: $*" >&2; }

for v in SECONDS_PER_RUN PROCS ASAN_SECONDS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { say "$v='${!v}': expected a number"; exit 2; }
done
[ -x "$BIN" ] || { say "$BIN is not built"; exit 1; }
if [ -n "$ASAN_BIN" ] && [ "$ASAN_SECONDS" != 0 ] && [ ! -x "$ASAN_BIN" ]; then
  say "$ASAN_BIN is not built"
  exit 1
fi

PSQL=psql
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$d/psql" ]; then PSQL=$d/psql; break; fi
done

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/run.XXXXXX")
chmod 755 "$WORK" # the server runs as postgres when we are root: let it reach its socket
SERVER="$WORK/pgserver"
LOG="$WORK/server.log"
PG_STARTED=0
FAILED=()

cleanup() {
  if [ "$PG_STARTED" = 1 ]; then
    bash "$ROOT/scripts/pg-test-server.sh" stop "$SERVER" >>"$LOG" 2>&1 ||
      say "stopping PostgreSQL failed; see $LOG"
  fi
  if [ ${#FAILED[@]} -eq 0 ]; then
    rm -rf -- "$WORK"
  else
    say "kept $WORK (delivery logs, databases, server log)"
  fi
}
trap cleanup EXIT
trap 'FAILED+=(interrupted); exit 130' INT TERM

BASE_URL=
if [[ " $STORES " == *" pg "* ]]; then
  say "starting PostgreSQL in $SERVER"
  PG_STARTED=1 # before the start, so that a half-started server is stopped too
  if bash "$ROOT/scripts/pg-test-server.sh" start "$SERVER" >>"$LOG" 2>&1; then
    BASE_URL=$(bash "$ROOT/scripts/pg-test-server.sh" url "$SERVER")
  else
    say "PostgreSQL did not start; see $LOG"
    FAILED+=("pg: the server did not start")
  fi
fi

# run LABEL STORE PROGRAM SECONDS [ENV...]: one run on a fresh database.
run() {
  local label=$1 store=$2 bin=$3 seconds=$4 url status=0
  shift 4
  case "$store" in
    sqlite)
      rm -f -- "$WORK/$label.db" "$WORK/$label.db-wal" "$WORK/$label.db-shm"
      url="sqlite:$WORK/$label.db?journal_mode=wal"
      ;;
    pg)
      if [ -z "$BASE_URL" ]; then
        FAILED+=("$label: no PostgreSQL server")
        return 0
      fi
      # The server's own database is uowtest; every run gets a fresh one beside it.
      url=${BASE_URL/\/uowtest\?//stress_$label?}
      if ! "$PSQL" -X -q -v ON_ERROR_STOP=1 "$BASE_URL" \
        -c "DROP DATABASE IF EXISTS stress_$label" -c "CREATE DATABASE stress_$label" \
        >>"$LOG" 2>&1; then
        FAILED+=("$label: could not create its database (see $LOG)")
        return 0
      fi
      ;;
    *)
      say "unknown store '$store' in STRESS_STORES (sqlite, pg)"
      FAILED+=("$label: unknown store")
      return 0
      ;;
  esac
  echo
  # The relay gets up to 5 minutes to drain; the timeout is a last resort.
  env "$@" timeout --kill-after=30 $((seconds + 600)) "$bin" --store "$url" --work "$WORK" \
    --procs "$PROCS" --seconds "$seconds" --label "$label" || status=$?
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && say "$label timed out"
    FAILED+=("$label (exit $status)")
  fi
}

for store in $STORES; do
  run "$store" "$store" "$BIN" "$SECONDS_PER_RUN"
done

if [ -n "$ASAN_BIN" ] && [ "$ASAN_SECONDS" != 0 ]; then
  # LeakSanitizer checks each process as it exits (workers and the relay call
  # exit()); a leak makes that process fail, and so the run.
  for store in $STORES; do
    run "${store}_asan" "$store" "$ASAN_BIN" "$ASAN_SECONDS" \
      "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:abort_on_error=1" \
      "UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  done
fi

echo
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "make stress: every run passed ($STORES; ${SECONDS_PER_RUN} s x $PROCS processes$(
    [ -n "$ASAN_BIN" ] && [ "$ASAN_SECONDS" != 0 ] &&
      echo "; ${ASAN_SECONDS} s under ASan+UBSan with leak checks"))"
  exit 0
fi
echo "make stress: FAILED: ${FAILED[*]}" >&2
exit 1
