#!/usr/bin/env bash
# run.sh - the benchmark driver that `make bench` (the CMake target `bench`) runs.
#
# Starts a throwaway PostgreSQL (scripts/pg-test-server.sh) and Redis
# (scripts/redis-test-server.sh), both stopped on exit whatever happens, then
# runs each workload on each store for libuow and for the references, each run
# on a fresh SQLite file and a fresh PostgreSQL database, REPEAT times
# round-robin (the best run counts; each round starts a figure's programs
# with another one), with libuow's relay and Redis-intent
# measurements (R1, R2: bench_relay) in the same rounds, then libuow's
# tracked-entity scaling run, and prints the tables (bench/report.py), which
# also writes the charts.
#
# Environment:
#   BENCH_BIN  directory of the bench_* programs (set by CMake)
#   BENCH_OUT  where results, table and charts go (default: BENCH_BIN)
#   QUICK=1    smaller sizes and one run per figure (a minute or so)
#   REPEAT=N   runs per figure (default 5, QUICK: 1)
#   SLOW_REPEAT=N  but SQLAlchemy's figures and R1, R2 only in the first N
#              rounds (default 3): they take most of a round's time, and
#              no target hangs on a small difference in them
#   SQLITE_PAIRS=N  runs of libuow and raw C, in turn, per round for W1-W3 on
#              SQLite (default 3, QUICK: 1): each takes a fraction of a
#              second, and on a noisy machine one pair per round says little
#   ONLY=RE    run only the lines whose "WORKLOAD STORE IMPL" matches RE
#   SCALE=0    skip the tracked-entity scaling run
#   RELAY=0    skip the relay and Redis-intent measurements (R1, R2)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BENCH_BIN:?BENCH_BIN must name the directory of the bench programs}
OUT=${BENCH_OUT:-$BIN}
QUICK=${QUICK:-0}
if [ "$QUICK" != 0 ]; then REPEAT=${REPEAT:-1}; else REPEAT=${REPEAT:-5}; fi
SLOW_REPEAT=${SLOW_REPEAT:-3}
if [ "$QUICK" != 0 ]; then SQLITE_PAIRS=${SQLITE_PAIRS:-1}; else SQLITE_PAIRS=${SQLITE_PAIRS:-3}; fi
export QUICK
ONLY=${ONLY:-}
TIMEOUT=${BENCH_TIMEOUT:-300}

say() { echo "bench: $*" >&2; }

# A python3 with SQLAlchemy: Debian's python3-sqlalchemy lives in /usr/bin/python3,
# which may not be the python3 first on PATH.
PYTHON=
for py in /usr/bin/python3 python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sqlalchemy, psycopg2' 2>/dev/null; then
    PYTHON=$py
    break
  fi
done
REPORT_PY=${PYTHON:-python3}
command -v "$REPORT_PY" >/dev/null || { say "python3 is required for the report"; exit 1; }

PSQL=psql
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$d/psql" ]; then PSQL=$d/psql; break; fi
done

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/run.XXXXXX")
SERVER="$OUT/pgserver"
RESULTS="$OUT/results.txt"
SCALE_OUT="$OUT/scale.txt"
LOG="$OUT/bench.log"
: >"$RESULTS"
: >"$SCALE_OUT"
: >"$LOG"

cleanup() {
  bash "$ROOT/scripts/pg-test-server.sh" stop "$SERVER" >>"$LOG" 2>&1 || true
  if [ -n "$REDIS_URL" ]; then
    bash "$ROOT/scripts/redis-test-server.sh" stop "$WORK" >>"$LOG" 2>&1 || true
  fi
  rm -rf -- "$WORK"
}
REDIS_URL=
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting PostgreSQL for the run (log: $LOG)"
bash "$ROOT/scripts/pg-test-server.sh" start "$SERVER" >>"$LOG" 2>&1 ||
  { say "PostgreSQL did not start; see $LOG"; exit 1; }
BASE_URL=$(bash "$ROOT/scripts/pg-test-server.sh" url "$SERVER")
# The server's own database is uowtest; every run gets a fresh one beside it.
DB_URL=${BASE_URL/\/uowtest\?//bench_run?}
[ "$DB_URL" != "$BASE_URL" ] || { say "unexpected server URL: $BASE_URL"; exit 1; }

RELAY=${RELAY:-1}
REDIS_WHY=
if [ "$RELAY" != 0 ]; then
  # Set before the start, so that the trap stops a half-started server too.
  REDIS_URL=$(bash "$ROOT/scripts/redis-test-server.sh" url "$WORK")
  say "starting Redis for the run (log: $LOG)"
  if ! bash "$ROOT/scripts/redis-test-server.sh" start "$WORK" >>"$LOG" 2>&1; then
    REDIS_WHY="redis-server did not start (see $LOG)"
    say "$REDIS_WHY: R1 and R2 are skipped"
  fi
fi

fresh_pg() {
  "$PSQL" -X -q -v ON_ERROR_STOP=1 "$BASE_URL" -c 'DROP DATABASE IF EXISTS bench_run' \
    -c 'CHECKPOINT' -c 'CREATE DATABASE bench_run' >>"$LOG" 2>&1
}

# The first program to write much to a freshly started server is 15-20 %
# slower than the next ones (W1 with libpq's pipeline: 236,444 then 279,816
# rows/s, and 248,462 then 302,885 on a second start): one untimed W1 first,
# so that no program of the first round pays for it.
warm_up_pg() {
  fresh_pg && "$BIN/bench_libpq" W1 pg "$DB_URL" pipeline >>"$LOG" 2>&1 ||
    say "the warm-up run on PostgreSQL failed (see $LOG)"
}

fresh_sqlite() {
  rm -f -- "$WORK"/*.db "$WORK"/*.db-wal "$WORK"/*.db-shm
}

# run WORKLOAD STORE IMPL: one figure, appended to RESULTS.
run() {
  local workload=$1 store=$2 impl=$3 db="$WORK/bench.db" cmd=() line
  if [ -n "$ONLY" ] && ! [[ "$workload $store $impl" =~ $ONLY ]]; then
    return 0
  fi
  fresh_sqlite
  if [[ "$store" == *pg* ]] && ! fresh_pg; then
    echo "na $impl $workload $store could not create a fresh PostgreSQL database" >>"$RESULTS"
    return 0
  fi
  local where=$db
  [ "$store" = pg ] && where=$DB_URL
  case "$impl" in
    libuow) cmd=("$BIN/bench_uow") ;;
    sqlite-c) cmd=("$BIN/bench_sqlite") ;;
    libpq) cmd=("$BIN/bench_libpq") ;;
    libpq-pipeline) cmd=("$BIN/bench_libpq") ;;
    raw-2pc) cmd=("$BIN/bench_2pc") ;;
    sqlalchemy) cmd=("${PYTHON:-python3}" "$HERE/w_sqlalchemy.py") ;;
  esac
  if [ "$workload" = W4 ]; then
    cmd+=(W4 "$db" "$DB_URL")
  else
    cmd+=("$workload" "$store" "$where")
  fi
  case "$impl" in
    libpq) cmd+=(plain) ;;
    libpq-pipeline) cmd+=(pipeline) ;;
  esac
  local status=0
  line=$(timeout "$TIMEOUT" "${cmd[@]}" 2>>"$LOG" | grep -E '^(result|na) ' | tail -n 1) || status=$?
  if [ -z "$line" ]; then
    if [ "$status" -eq 124 ]; then
      line="na $impl $workload $store timed out after ${TIMEOUT}s"
    else
      line="na $impl $workload $store the program printed no result (exit $status; see $LOG)"
    fi
  fi
  echo "$line" >>"$RESULTS"
  say "  $workload $store $impl: ${line#* * * * }"
}

# run_relay R1|R2 STORE BATCH: libuow's relay / Redis intents (bench_relay),
# whose every result line is appended to RESULTS.
run_relay() {
  local workload=$1 store=$2 batch=$3 db="$WORK/bench.db" lines
  if [ -n "$ONLY" ] && ! [[ "$workload $store libuow" =~ $ONLY ]]; then
    return 0
  fi
  if [ -n "$REDIS_WHY" ]; then
    echo "na libuow $workload-b$batch $store $REDIS_WHY" >>"$RESULTS"
    return 0
  fi
  fresh_sqlite
  if [ "$store" = pg ] && ! fresh_pg; then
    echo "na libuow $workload-b$batch $store could not create a fresh PostgreSQL database" >>"$RESULTS"
    return 0
  fi
  local where=$db status=0
  [ "$store" = pg ] && where=$DB_URL
  lines=$(timeout "$TIMEOUT" "$BIN/bench_relay" "$workload" "$store" "$where" "$REDIS_URL" \
    "$batch" 2>>"$LOG" | grep -E '^(result|na) ') || status=$?
  if [ -z "$lines" ]; then
    if [ "$status" -eq 124 ]; then
      lines="na libuow $workload-b$batch $store timed out after ${TIMEOUT}s"
    else
      lines="na libuow $workload-b$batch $store the program printed no result (exit $status; see $LOG)"
    fi
  fi
  echo "$lines" >>"$RESULTS"
  while IFS= read -r line; do
    say "  $(cut -d' ' -f3,4 <<<"$line") libuow: $(cut -d' ' -f5- <<<"$line")"
  done <<<"$lines"
}

# rotated N WORD...: the words, the first N-1 of them moved to the end. Each
# round runs the programs of a figure in another order, so that none is
# always the first to meet the server after other work (the server's start,
# or the relay runs of the round before). In one make bench where libuow
# always ran first, its W1 on PostgreSQL was 1.6x slower than libpq's
# pipeline in all three rounds; rotated, and after warm_up_pg, 0.74x-1.07x.
rotated() {
  local n=$1
  shift
  local k=$(((n - 1) % $#))
  echo "${@:k+1}" "${@:1:k}"
}

say "sizes: $([ "$QUICK" != 0 ] && echo quick || echo full); $REPEAT run(s) per figure"
warm_up_pg
for ((rep = 1; rep <= REPEAT; rep++)); do
  say "run $rep of $REPEAT"
  slow=sqlalchemy
  [ "$rep" -le "$SLOW_REPEAT" ] || slow=
  for workload in W1 W2 W3; do
    for ((pair = 1; pair <= SQLITE_PAIRS; pair++)); do
      once=$slow
      [ "$pair" = 1 ] || once=
      for impl in $(rotated $((rep + pair - 1)) libuow sqlite-c $once); do
        run "$workload" sqlite "$impl"
      done
    done
    for impl in $(rotated $rep libuow libpq libpq-pipeline $slow); do
      run "$workload" pg "$impl"
    done
  done
  for impl in $(rotated $rep libuow raw-2pc $slow); do run W4 sqlite+pg "$impl"; done
  if [ "$RELAY" != 0 ] && [ "$rep" -le "$SLOW_REPEAT" ]; then
    for store in sqlite pg; do
      for batch in 100 1000; do
        run_relay R1 "$store" "$batch"
        run_relay R2 "$store" "$batch"
      done
    done
  fi
done

if [ "${SCALE:-1}" != 0 ]; then
  say "tracked entities: 1k to $([ "$QUICK" != 0 ] && echo 100k || echo 1M) (libuow, in-memory SQLite)"
  timeout "$TIMEOUT" "$BIN/bench_uow" scale >"$SCALE_OUT" 2>>"$LOG" ||
    echo "na libuow scale sqlite exited with status $?" >>"$SCALE_OUT"
fi

echo
"$REPORT_PY" "$HERE/report.py" "$RESULTS" "$SCALE_OUT" "$OUT"
