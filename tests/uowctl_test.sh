#!/usr/bin/env bash
# uowctl_test.sh CASE - end-to-end tests of uowctl (tools/uowctl.c): each case
# runs the built binary the way a person would, against real SQLite files and,
# for the cases that need one, the throwaway PostgreSQL server of the test
# harness. Registered with CTest by tests/CMakeLists.txt as uowctl.CASE.
#
# Environment:
#   UOWCTL           the uowctl binary
#   UOW_SOURCE_DIR   the source tree (the version comes from include/uow.h)
#   UOW_TEST_PG_URL  libpq URL of the throwaway server (PostgreSQL cases only)
# The working directory is the case's own; files from an earlier run are removed.
# PostgreSQL cases work in a database of their own, created and dropped here,
# so counts are not disturbed by other suites' rows.
set -euo pipefail

CASE=${1:?usage: uowctl_test.sh CASE}
: "${UOWCTL:?UOWCTL must name the uowctl binary}"
WORK=$PWD
rm -f -- "$WORK"/*.db "$WORK"/*.ini "$WORK"/*.out "$WORK"/*.err

fail() {
  echo "FAIL ($CASE): $*" >&2
  exit 1
}

# ctl RC ARGS...: run uowctl, keep stdout in ctl.out and stderr in ctl.err,
# and insist on exit status RC.
ctl() {
  local want=$1 rc=0
  shift
  "$UOWCTL" "$@" >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "--- uowctl $* (exit $rc, expected $want)" >&2
    echo "--- stdout:" >&2
    cat "$WORK/ctl.out" >&2
    echo "--- stderr:" >&2
    cat "$WORK/ctl.err" >&2
    fail "uowctl $* exited $rc, expected $want"
  fi
}

# has FILE TEXT / lacks FILE TEXT: fixed-string checks on ctl.out or ctl.err.
has() {
  grep -qF -- "$2" "$WORK/$1" || {
    cat "$WORK/$1" >&2
    fail "$1 lacks '$2'"
  }
}
lacks() {
  if grep -qF -- "$2" "$WORK/$1"; then
    cat "$WORK/$1" >&2
    fail "$1 contains '$2'"
  fi
}
empty() {
  [ ! -s "$WORK/$1" ] || {
    cat "$WORK/$1" >&2
    fail "$1 is not empty"
  }
}

# row STORE: the status table's line for STORE, words squeezed to one space.
row() {
  awk -v name="$1" '$1 == name { $1 = $1; print; exit }' "$WORK/ctl.out"
}
expect_row() {
  local got
  got=$(row "$1")
  [ "$got" = "$2" ] || {
    cat "$WORK/ctl.out" >&2
    fail "row of store '$1' is '$got', expected '$2'"
  }
}

# json EXPR: evaluate a Python expression over the JSON document in ctl.out
# (bound to `d`); fails unless the document parses and the expression is true.
json() {
  python3 -m json.tool "$WORK/ctl.out" >/dev/null || fail "ctl.out is not valid JSON"
  python3 - "$WORK/ctl.out" "$1" <<'EOF' || fail "JSON check failed: $1"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
if not eval(sys.argv[2], {"d": d}):
    print(json.dumps(d, indent=2), file=sys.stderr)
    sys.exit(1)
EOF
}

# A relay running beside (slow under valgrind) may hold the write lock: wait for it.
sql() { sqlite3 -batch -bail -cmd ".timeout 10000" "$@"; }

# ---- PostgreSQL: a database of the case's own ----

PG_DB=""
PG_URL=""
pg_psql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Roll back what an earlier (failed) run left prepared in our database, then drop it.
pg_drop_db() {
  local gid
  [ -n "$PG_DB" ] || return 0
  if [ "$(pg_psql "$UOW_TEST_PG_URL" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = 1 ]; then
    for gid in $(pg_psql "$UOW_TEST_PG_URL" \
                   -c "SELECT gid FROM pg_prepared_xacts WHERE database = '$PG_DB'"); do
      pg_psql "$PG_URL" -c "ROLLBACK PREPARED '$gid'"
    done
    pg_psql "$UOW_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
  fi
}

pg_setup() {
  : "${UOW_TEST_PG_URL:?this case needs UOW_TEST_PG_URL (the postgres fixture)}"
  case "$UOW_TEST_PG_URL" in
    */uowtest\?*) ;;
    *) fail "UOW_TEST_PG_URL does not name database uowtest: $UOW_TEST_PG_URL" ;;
  esac
  PG_DB="uowctl_$(printf '%s' "$CASE" | cksum | cut -d' ' -f1)"
  PG_URL=${UOW_TEST_PG_URL/\/uowtest\?/\/$PG_DB\?}
  pg_drop_db
  pg_psql "$UOW_TEST_PG_URL" -c "CREATE DATABASE $PG_DB"
  trap pg_drop_db EXIT
}

# pg_url_with_password PASSWORD: our database's URL with a password in it
# (the test server trusts local connections, so any password is accepted).
pg_url_with_password() {
  printf 'postgresql://postgres:%s@/%s?%s' "$1" "$PG_DB" "${UOW_TEST_PG_URL#*\?}"
}

# ---- the cases ----

case_help_on_every_command() {
  # No configuration file exists here: help must not need one.
  local cmd
  for args in "--help" "-h" "help"; do
    # shellcheck disable=SC2086
    ctl 0 $args
    has ctl.out "Usage: uowctl [-c FILE] COMMAND"
    for cmd in status recover schema relay requeue; do has ctl.out "  $cmd "; done
    has ctl.out "[store main]"
    empty ctl.err
  done
  for cmd in status recover schema relay requeue; do
    for args in "$cmd --help" "$cmd -h" "help $cmd" "-c nowhere.ini $cmd --help"; do
      # shellcheck disable=SC2086
      ctl 0 $args
      has ctl.out "Usage: uowctl [-c FILE] $cmd"
      has ctl.out "Exit status:"
      empty ctl.err
    done
  done
  ctl 0 status --help
  has ctl.out "--json"
  ctl 0 recover --help
  has ctl.out "--json"
  ctl 0 schema --help
  lacks ctl.out "--json"
  ctl 0 relay --help
  for opt in --redis-stream --stream --command --stdout --store --once --batch --max-attempts \
             --interval "delivered N (R/s)  retried N  dead N  purged N  backlog N"; do
    has ctl.out "$opt"
  done
  ctl 0 requeue --help
  has ctl.out "--store NAME"
}

case_version_prints_the_library_version() {
  local version
  version=$(sed -n 's/^#define UOW_VERSION_STRING "\(.*\)"$/\1/p' "$UOW_SOURCE_DIR/include/uow.h")
  [ -n "$version" ] || fail "no UOW_VERSION_STRING in include/uow.h"
  ctl 0 --version
  [ "$(cat "$WORK/ctl.out")" = "uowctl (libuow) $version" ] || fail "--version printed $(cat "$WORK/ctl.out")"
  empty ctl.err
}

case_unknown_command_or_option_exits_2() {
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >uowctl.ini
  ctl 2 frobnicate
  has ctl.err "unknown command 'frobnicate'"
  has ctl.err "status recover schema"
  ctl 2 --bogus status
  has ctl.err "unknown option '--bogus'"
  ctl 2 status --bogus
  has ctl.err "uowctl status: unknown option '--bogus'"
  has ctl.err "uowctl status --help"
  ctl 2 schema --json
  has ctl.err "uowctl schema: unknown option '--json'"
  ctl 2 status extra
  has ctl.err "unexpected argument 'extra'"
  ctl 2 help frobnicate
  has ctl.err "unknown command 'frobnicate'"
  ctl 2
  has ctl.err "no command given"
  ctl 2 -c
  has ctl.err "option '-c' needs a file name"
  ctl 2 status --config
  has ctl.err "option '--config' needs a file name"
  empty ctl.out
  [ ! -e main.db ] || fail "a usage error opened the store"
}

# bad_config LINE MESSAGE CONTENT: uowctl status must exit 2 with
# "bad.ini:LINE: MESSAGE" (LINE empty: a file-wide error) and print nothing on stdout.
bad_config() {
  printf '%b' "$3" >bad.ini
  ctl 2 -c bad.ini status
  if [ -n "$1" ]; then has ctl.err "uowctl: bad.ini:$1: $2"; else has ctl.err "uowctl: bad.ini: $2"; fi
  empty ctl.out
  [ "$(wc -l <"$WORK/ctl.err")" -eq 1 ] || fail "expected one error line, got: $(cat "$WORK/ctl.err")"
}

case_bad_config_line_is_reported_with_file_and_line() {
  local ok="[store main]\nurl = sqlite:$WORK/main.db\n"
  bad_config 4 "unknown section [storage main]" "$ok\n[storage main]\nurl = sqlite:x.db\n"
  bad_config 3 "unknown key 'port' in [store main] (expected url)" "${ok}port = 5432\n"
  bad_config 2 "unknown key 'pools' in [env]" "[env]\npools = 4\n$ok"
  bad_config 4 "[store other] has no url" "$ok; a comment\n[store other]\n[store third]\nurl = sqlite:t.db\n"
  bad_config 5 "store 'main' is defined twice (first on line 1)" "$ok\n\n[store main]\nurl = sqlite:y.db\n"
  bad_config 2 "pool_size must be a whole number from 1 to 1000" "[env]\npool_size = four\n$ok"
  bad_config 2 "pool_size must be a whole number from 1 to 1000" "[env]\npool_size = 0\n$ok"
  bad_config 2 "pool_size must be a whole number from 1 to 1000" "[env]\npool_size = 99999999999999999999\n$ok"
  bad_config 3 "'pool_size' is set twice in this section" "[env]\npool_size = 2\npool_size = 3\n$ok"
  bad_config 2 "decider 'ledger' is not a store of this file" "[env]\ndecider = ledger\n$ok"
  bad_config 4 "outbox must name a store" "${ok}[env]\noutbox = not a name\n"
  bad_config 4 "syntax error" "$ok\nthis line is not ini\n"
  bad_config 1 "syntax error" "[store main\nurl = sqlite:x.db\n"
  bad_config 1 "'url' is outside a section" "url = sqlite:x.db\n$ok"
  bad_config 1 "a store section needs a name: [store NAME]" "[store]\nurl = sqlite:x.db\n"
  bad_config 1 "bad store name 'my-db'" "[store my-db]\nurl = sqlite:x.db\n"
  bad_config 3 "a value cannot continue on an indented line" "$ok  sqlite:more.db\n"
  bad_config 2 "url is empty" "[store main]\nurl =\n"
  bad_config 4 "[env] is given twice (first on line 1)" "[env]\n${ok}[env]\n"
  bad_config "" "no store: add a [store NAME] section with a url" "; only a comment\n[env]\n"
  # A line longer than any URL: refused, not split into two lines.
  bad_config 2 "the line is longer than" "[store main]\nurl = sqlite:$(printf 'x%.0s' $(seq 5000)).db\n"
  # CRLF line ends and a UTF-8 byte order mark are fine.
  printf '\xEF\xBB\xBF[store main]\r\nurl = sqlite:%s/main.db ; the app\r\n' "$WORK" >crlf.ini
  ctl 0 -c crlf.ini status
  expect_row main "main sqlite yes no 0 ? ? ? sqlite:$WORK/main.db"
  ctl 2 -c missing.ini status
  has ctl.err "cannot open configuration file 'missing.ini': No such file or directory"
}

case_config_is_found_by_option_environment_or_current_directory() {
  printf '[store from_cwd]\nurl = sqlite:%s/cwd.db\n' "$WORK" >uowctl.ini
  printf '[store from_env]\nurl = sqlite:%s/env.db\n' "$WORK" >env.ini
  printf '[store from_option]\nurl = sqlite:%s/option.db\n' "$WORK" >option.ini
  ctl 0 status
  has ctl.out from_cwd
  UOWCTL_CONFIG=env.ini ctl 0 status
  has ctl.out from_env
  UOWCTL_CONFIG=env.ini ctl 0 -c option.ini status
  has ctl.out from_option
  for args in "-coption.ini status" "--config option.ini status" "--config=option.ini status" \
              "status -c option.ini" "status --config=option.ini"; do
    # shellcheck disable=SC2086
    ctl 0 $args
    has ctl.out from_option
    lacks ctl.out from_cwd
  done
  rm uowctl.ini
  ctl 2 status
  has ctl.err "cannot open configuration file 'uowctl.ini'"
  has ctl.err "-c FILE or UOWCTL_CONFIG"
}

case_schema_creates_the_library_tables() {
  printf '[env]\noutbox = b\n[store a]\nurl = sqlite:%s/a.db\n[store b]\nurl = sqlite:%s/b.db\n' \
    "$WORK" "$WORK" >uowctl.ini
  ctl 0 schema
  has ctl.out "2 stores: a b"
  empty ctl.err
  for db in a.db b.db; do
    [ "$(sql "$db" "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master
                    WHERE type = 'table' AND name LIKE 'uow\_%' ESCAPE '\' ORDER BY name)")" \
      = "uow_decision uow_outbox uow_relay_lease" ] || fail "$db lacks the library's tables"
  done
  ctl 0 schema # again: nothing to do, still fine
  ctl 0 status
  expect_row a "a sqlite yes no 0 0 0 0 sqlite:$WORK/a.db"
}

case_status_lists_every_store_as_a_table() {
  pg_setup
  printf '[env]\npool_size = 2\ndecider = ledger\n[store main]\nurl = sqlite:%s/main.db\n[store audit]\nurl = sqlite:%s/audit.db\n[store ledger]\nurl = %s\n' \
    "$WORK" "$WORK" "$PG_URL" >uowctl.ini
  ctl 0 schema
  local now
  now=$(date +%s)
  sql main.db "INSERT INTO uow_outbox (unit_id, seq, kind, topic, created_at, state, attempts, next_attempt_at)
               VALUES ('u-1', 1, 'event', 't', $now, 0, 0, 0), ('u-1', 2, 'event', 't', $now, 0, 0, 0),
                      ('u-2', 1, 'event', 't', $now, 2, 9, 0), ('u-3', 1, 'event', 't', $now, 1, 1, 0)"
  pg_psql "$PG_URL" -c "INSERT INTO uow_outbox (unit_id, seq, kind, topic, created_at, state, attempts, next_attempt_at)
                        VALUES ('u-4', 1, 'event', 't', 0, 2, 9, 0)"
  ctl 0 status
  empty ctl.err
  [ "$(head -n 1 "$WORK/ctl.out" | tr -s ' ')" = \
    "STORE SCHEME REACHABLE PREPARE IN-DOUBT DECISIONS OUTBOX-PENDING OUTBOX-DEAD URL" ] ||
    fail "unexpected header: $(head -n 1 "$WORK/ctl.out")"
  expect_row main "main sqlite yes no 0 0 2 1 sqlite:$WORK/main.db"
  expect_row audit "audit sqlite yes no 0 0 0 0 sqlite:$WORK/audit.db"
  expect_row ledger "ledger postgresql yes yes 0 0 0 1 $PG_URL"
  [ "$(awk 'NR > 1 { print $1 }' "$WORK/ctl.out" | paste -sd' ')" = "main audit ledger" ] ||
    fail "stores are not listed in file order"
  # Aligned: the URL, the last column, starts at the same offset on every line.
  local url_col
  url_col=$(head -n 1 "$WORK/ctl.out" | awk '{ print index($0, "URL") }')
  awk -v c="$url_col" 'NR > 1 && NF && substr($0, c - 2, 3) !~ /^  [^ ]$/ { bad = 1 } END { exit bad }' \
    "$WORK/ctl.out" || fail "the URL column is not aligned"
}

case_status_json_is_valid_json() {
  pg_setup
  # An unreachable store brings a driver message with quotes and a newline into the JSON.
  printf '[store main]\nurl = sqlite:%s/main.db\n[store ledger]\nurl = %s\n[store gone]\nurl = postgresql:///x?host=%s/no-such-dir&port=1\n' \
    "$WORK" "$PG_URL" "$WORK" >uowctl.ini
  ctl 1 status --json
  json 'isinstance(d["stores"], list) and [s["name"] for s in d["stores"]] == ["main", "ledger", "gone"]'
  json 'd["all_reachable"] is False'
  json 'all(set(s) == {"name", "scheme", "url", "reachable", "transactional", "can_prepare", "in_doubt",
                       "decisions", "outbox_pending", "outbox_dead", "error"} for s in d["stores"])'
  json 'd["stores"][0]["scheme"] == "sqlite" and d["stores"][0]["reachable"] is True and d["stores"][0]["can_prepare"] is False'
  json 'd["stores"][0]["in_doubt"] == 0 and d["stores"][0]["decisions"] is None and "uow_decision" in d["stores"][0]["error"]'
  json 'd["stores"][1]["scheme"] == "postgresql" and d["stores"][1]["can_prepare"] is True'
  json 'd["stores"][2]["reachable"] is False and d["stores"][2]["url"] is None and d["stores"][2]["outbox_dead"] is None'
  json '"\"" in d["stores"][2]["error"] and "no-such-dir" in d["stores"][2]["error"]'
  printf '[store main]\nurl = sqlite:%s/main.db\n[store ledger]\nurl = %s\n' "$WORK" "$PG_URL" >ok.ini
  ctl 0 -c ok.ini schema
  ctl 0 -c ok.ini status --json
  json 'd["all_reachable"] is True and all(s["error"] is None and s["outbox_pending"] == 0 for s in d["stores"])'
  # A store name and path with characters JSON must escape.
  mkdir -p "odd \"dir\"\\"
  printf '[store main]\nurl = sqlite:%s/odd "dir"\\/main.db\n' "$WORK" >odd.ini
  ctl 0 -c odd.ini status --json
  json 'd["stores"][0]["url"].endswith("/odd \"dir\"\\/main.db")'
}

case_status_exits_1_when_a_store_is_unreachable() {
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >ok.ini
  ctl 0 -c ok.ini status
  printf '[store main]\nurl = sqlite:%s/main.db\n[store lost]\nurl = sqlite:%s/no-such-dir/lost.db\n[store away]\nurl = postgresql:///app?host=%s/no-such-dir&port=1\n' \
    "$WORK" "$WORK" "$WORK" >uowctl.ini
  ctl 1 status
  expect_row main "main sqlite yes no 0 ? ? ? sqlite:$WORK/main.db"
  expect_row lost "lost sqlite no ? ? ? ? ? -"
  expect_row away "away postgresql no ? ? ? ? ? -"
  has ctl.out "lost: add store 'lost'"
  has ctl.out "away: add store 'away'"
  has ctl.out "no-such-dir"
}

case_password_never_printed() {
  pg_setup
  local secret=Pw4uowctlTEST secret2=QueryPw4uowctl secret3=DeadPw4uowctl
  printf '[env]\ndecider = ledger\n[store main]\nurl = sqlite:%s/main.db\n[store ledger]\nurl = %s\n' \
    "$WORK" "$(pg_url_with_password "$secret")" >uowctl.ini
  # Reachable (the server trusts local connections), so every command runs through.
  ctl 0 schema
  ctl 0 status
  has ctl.out "postgresql://postgres:***@/$PG_DB?"
  lacks ctl.out "$secret"
  lacks ctl.err "$secret"
  ctl 0 status --json
  lacks ctl.out "$secret"
  ctl 0 recover
  ctl 0 recover --json
  lacks ctl.out "$secret"
  lacks ctl.err "$secret"
  # Unreachable stores: the library's messages carry the URL, with the password hidden.
  printf '[store main]\nurl = sqlite:%s/main.db\n[store gone]\nurl = postgresql://app:%s@/x?host=%s/none&port=1\n[store gone2]\nurl = postgresql:///x?host=%s/none&port=1&password=%s\n' \
    "$WORK" "$secret3" "$WORK" "$WORK" "$secret2" >down.ini
  local args
  for args in "status" "status --json" "recover" "recover --json" "schema"; do
    # shellcheck disable=SC2086
    "$UOWCTL" -c down.ini $args >"$WORK/ctl.out" 2>"$WORK/ctl.err" && fail "uowctl $args succeeded"
    for s in "$secret" "$secret2" "$secret3"; do
      lacks ctl.out "$s"
      lacks ctl.err "$s"
    done
  done
  # Errors in the file name the line, never the URL's value.
  printf '[store main]\nurl = postgresql://u:%s@/x\nurl = postgresql://u:%s@/y\n' "$secret" "$secret3" >bad.ini
  ctl 2 -c bad.ini status
  has ctl.err "bad.ini:3:"
  lacks ctl.err "$secret"
  lacks ctl.err "$secret3"
  printf '[store main]\nurl = postgresql://u:%s@/x\n[env]\ndecider = nope\n' "$secret" >bad.ini
  ctl 2 -c bad.ini status
  lacks ctl.err "$secret"
}

case_recover_reports_counts() {
  pg_setup
  printf '[env]\ndecider = ledger\n[store ledger]\nurl = %s\n[store main]\nurl = sqlite:%s/main.db\n' \
    "$PG_URL" "$WORK" >uowctl.ini
  ctl 0 schema
  ctl 0 recover
  empty ctl.err
  local label
  for label in "in-doubt units found" "committed" "rolled back" "abort records written" \
               "decision records removed" "skipped"; do
    grep -qE "^$label +0\$" "$WORK/ctl.out" || fail "no '$label 0' line in: $(cat "$WORK/ctl.out")"
  done
  ctl 0 recover --json
  json 'd == {"ok": True, "in_doubt": 0, "committed": 0, "rolled_back": 0, "fenced": 0,
              "decisions_removed": 0, "skipped": 0, "error": None}'
}

case_recover_and_schema_exit_1_with_the_library_message() {
  printf '[store main]\nurl = sqlite:%s/main.db\n[store lost]\nurl = sqlite:%s/no-such-dir/lost.db\n' \
    "$WORK" "$WORK" >uowctl.ini
  ctl 1 recover
  has ctl.err "uowctl: add store 'lost'"
  has ctl.err "no-such-dir"
  ctl 1 recover --json
  json 'd["ok"] is False and d["error"].startswith("add store '"'"'lost'"'"'")'
  ctl 1 schema
  has ctl.err "uowctl: add store 'lost'"
  empty ctl.out
  # The library's tables missing: recover says which store and what to do.
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >fresh.ini
  ctl 1 -c fresh.ini recover
  has ctl.err "uowctl: recover: cannot read the decision records of store 'main'"
}

# A prepared transaction left behind as a crash would leave it: gid
# "uow1:<unit id>:<decider>:<participant>" (src/core/coord.c).
prepare_in_doubt() {
  local unit=$1 decider=$2 key=$3
  pg_psql "$PG_URL" -c "BEGIN" -c "INSERT INTO uowctl_items (k) VALUES ('$key')" \
    -c "PREPARE TRANSACTION 'uow1:$unit:$decider:ledger'"
}

case_status_counts_and_recover_settles_in_doubt_units() {
  pg_setup
  printf '[store main]\nurl = sqlite:%s/main.db\n[store ledger]\nurl = %s\n' "$WORK" "$PG_URL" >uowctl.ini
  ctl 0 schema
  pg_psql "$PG_URL" -c "CREATE TABLE uowctl_items (k text PRIMARY KEY)"
  # Unit 1 crashed after its decision committed in 'main'; unit 2 before it.
  sql main.db "INSERT INTO uow_decision (unit_id, outcome, participants, created_at)
               VALUES ('0123456789abcdef-1', 'commit', 'ledger', $(date +%s)000)"
  prepare_in_doubt 0123456789abcdef-1 main decided
  prepare_in_doubt 0123456789abcdef-2 main undecided
  # Another application's prepared transaction is none of libuow's business.
  pg_psql "$PG_URL" -c "BEGIN" -c "INSERT INTO uowctl_items (k) VALUES ('foreign')" \
    -c "PREPARE TRANSACTION 'someone-else-1'"

  ctl 0 status
  expect_row main "main sqlite yes no 0 1 0 0 sqlite:$WORK/main.db"
  expect_row ledger "ledger postgresql yes yes 2 0 0 0 $PG_URL"
  ctl 0 status --json
  json 'd["stores"][1]["in_doubt"] == 2 and d["stores"][0]["decisions"] == 1'

  ctl 0 recover --json
  json 'd == {"ok": True, "in_doubt": 2, "committed": 1, "rolled_back": 1, "fenced": 1,
              "decisions_removed": 1, "skipped": 0, "error": None}'
  [ "$(pg_psql "$PG_URL" -c "SELECT string_agg(k, ',' ORDER BY k) FROM uowctl_items")" = decided ] ||
    fail "recover did not commit the decided unit and roll back the other"
  [ "$(sql main.db "SELECT outcome FROM uow_decision WHERE unit_id = '0123456789abcdef-2'")" = abort ] ||
    fail "no abort record fences the undecided unit"
  [ "$(pg_psql "$PG_URL" -c "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")" \
    = someone-else-1 ] || fail "recover touched a prepared transaction that is not libuow's"

  ctl 0 status
  expect_row ledger "ledger postgresql yes yes 0 0 0 0 $PG_URL"
  expect_row main "main sqlite yes no 0 1 0 0 sqlite:$WORK/main.db" # the abort record stays
  ctl 0 recover
  grep -qE '^in-doubt units found +0$' "$WORK/ctl.out" || fail "a second recover found work"

  # A unit decided by a store this configuration lacks is skipped, and said so.
  prepare_in_doubt 0123456789abcdef-3 elsewhere orphan
  ctl 1 recover
  grep -qE '^skipped +1$' "$WORK/ctl.out" || fail "the orphan was not counted as skipped"
  has ctl.err "uowctl: recover: prepared transaction 'uow1:0123456789abcdef-3:elsewhere:ledger'"
  has ctl.err "store 'elsewhere', which is not in this environment"
  pg_psql "$PG_URL" -c "ROLLBACK PREPARED 'uow1:0123456789abcdef-3:elsewhere:ledger'" \
    -c "ROLLBACK PREPARED 'someone-else-1'"
}

# ---- the outbox: relay and requeue ----

# sqlite_store NAME...: a configuration of SQLite stores NAME.db, with the library's tables.
sqlite_store() {
  local name
  : >uowctl.ini
  for name in "$@"; do
    printf '[store %s]\nurl = sqlite:%s/%s.db\n' "$name" "$WORK" "$name" >>uowctl.ini
  done
  ctl 0 schema
}

# add_event DB UNIT SEQ TOPIC KEY PAYLOAD: a pending outbox row, as a committed
# unit's uow_emit() leaves it (KEY and PAYLOAD are SQL expressions).
add_event() {
  sql "$1" "INSERT INTO uow_outbox (unit_id, seq, kind, topic, event_key, payload, created_at,
                                    state, attempts, next_attempt_at)
            VALUES ('$2', $3, 'event', '$4', $5, $6, 1700000000000, 0, 0, 0)"
}

# progress_line FILE: the last progress line the relay printed in FILE, or fail.
progress_line() {
  grep -E '^delivered [0-9]+ \([0-9]+\.[0-9]/s\)  retried [0-9]+  dead [0-9]+  purged [0-9]+  backlog ([0-9]+|\?)$' \
    "$WORK/$1" | tail -n 1 | grep . || {
    cat "$WORK/$1" >&2
    fail "no progress line in $1"
  }
}

# expect_progress FILE TEXT: the last progress line, without its rate, is TEXT.
expect_progress() {
  local got
  got=$(progress_line "$1" | sed 's/ ([0-9.]*\/s)//')
  [ "$got" = "$2" ] || fail "progress line is '$got', expected '$2'"
}

case_relay_once_prints_events_as_json_lines_to_stdout() {
  sqlite_store main
  add_event main.db u-1 1 user.registered "'42'" "CAST('{\"name\": \"Zoë\"}' AS BLOB)"
  add_event main.db u-1 2 user.welcomed NULL "X'FF00FE'"
  add_event main.db u-2 1 user.registered "'43'" NULL
  ctl 0 relay --once --stdout
  [ "$(wc -l <"$WORK/ctl.out")" -eq 3 ] || fail "expected 3 lines: $(cat "$WORK/ctl.out")"
  python3 - "$WORK/ctl.out" <<'EOF' || fail "the JSON lines are not the events"
import base64, json, sys
events = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
assert [e["event_id"] for e in events] == ["main:1", "main:2", "main:3"], events
assert [(e["unit_id"], e["seq"], e["topic"], e["key"]) for e in events] == [
    ("u-1", 1, "user.registered", "42"), ("u-1", 2, "user.welcomed", None),
    ("u-2", 1, "user.registered", "43")], events
assert events[0]["payload_encoding"] == "utf8"
assert json.loads(events[0]["payload"]) == {"name": "Zoë"}
assert events[1]["payload_encoding"] == "base64"
assert base64.b64decode(events[1]["payload"]) == b"\xff\x00\xfe"
assert events[2]["payload"] == ""
assert all(e["attempt"] == 1 and e["created_at"] == 1700000000000 for e in events)
EOF
  expect_progress ctl.err "delivered 3  retried 0  dead 0  purged 0  backlog 0"
  [ "$(wc -l <"$WORK/ctl.err")" -eq 1 ] || fail "expected one line on stderr: $(cat "$WORK/ctl.err")"
  [ "$(sql main.db "SELECT group_concat(state) FROM uow_outbox")" = 1,1,1 ] ||
    fail "the events are not marked delivered"
  ctl 0 status
  expect_row main "main sqlite yes no 0 0 0 0 sqlite:$WORK/main.db"
}

case_relay_once_with_a_failing_command_counts_a_retry() {
  sqlite_store a b
  add_event a.db u-1 1 t "'k'" "CAST('x' AS BLOB)"
  add_event b.db u-2 1 t "'k'" "CAST('y' AS BLOB)"
  ctl 0 relay --once --store a --command 'exit 3'
  empty ctl.out
  expect_progress ctl.err "delivered 0  retried 1  dead 0  purged 0  backlog 1"
  [ "$(sql a.db "SELECT state, attempts, next_attempt_at > 0, last_error IS NOT NULL FROM uow_outbox")" \
    = "0|1|1|1" ] || fail "the failed event is not scheduled for a retry: $(sql a.db "SELECT * FROM uow_outbox")"
  [ "$(sql b.db "SELECT state, attempts FROM uow_outbox")" = "0|0" ] || fail "--store a touched store b"
  # With one attempt allowed, the failure sets the event aside.
  ctl 0 relay --once --store b --max-attempts 1 --command 'cat >/dev/null; exit 3'
  expect_progress ctl.err "delivered 0  retried 0  dead 1  purged 0  backlog 0"
  [ "$(sql b.db "SELECT state, attempts FROM uow_outbox")" = "2|1" ] || fail "the event is not dead"
  ctl 0 status
  expect_row a "a sqlite yes no 0 0 1 0 sqlite:$WORK/a.db"
  expect_row b "b sqlite yes no 0 0 0 1 sqlite:$WORK/b.db"
}

case_relay_to_an_unreachable_redis_never_prints_its_password() {
  sqlite_store main
  add_event main.db u-1 1 t "'k'" "CAST('x' AS BLOB)"
  local secret=RedisPw4uowctl
  ctl 0 relay --once --redis-stream "redis://app:$secret@127.0.0.1:1/0" --stream s
  expect_progress ctl.err "delivered 0  retried 1  dead 0  purged 0  backlog 1"
  lacks ctl.err "$secret"
  lacks ctl.out "$secret"
  # The reason is kept with the event, masked.
  local why
  why=$(sql main.db "SELECT last_error FROM uow_outbox")
  case "$why" in
    *"$secret"*) fail "last_error shows the password: $why" ;;
    *'app:***@'*) ;;
    *) fail "last_error does not name the Redis URL: $why" ;;
  esac
}

case_requeue_revives_dead_events() {
  sqlite_store main other
  add_event main.db u-1 1 t "'k'" NULL
  add_event main.db u-1 2 t "'k'" NULL
  add_event main.db u-2 1 t NULL NULL
  add_event other.db u-3 1 t NULL NULL
  sql main.db "UPDATE uow_outbox SET state = 2, attempts = 10, next_attempt_at = 9999999999999,
                                     last_error = 'sink down' WHERE seq = 1"
  sql other.db "UPDATE uow_outbox SET state = 2, attempts = 10"
  ctl 0 status
  expect_row main "main sqlite yes no 0 0 1 2 sqlite:$WORK/main.db"
  ctl 0 requeue --store main
  [ "$(cat "$WORK/ctl.out")" = "requeued 2 dead events" ] || fail "requeue printed: $(cat "$WORK/ctl.out")"
  empty ctl.err
  [ "$(sql main.db "SELECT group_concat(state || ':' || attempts, ' ') FROM uow_outbox")" = "0:0 0:0 0:0" ] ||
    fail "dead events are not pending again: $(sql main.db "SELECT * FROM uow_outbox")"
  [ "$(sql other.db "SELECT state FROM uow_outbox")" = 2 ] || fail "--store main touched store other"
  ctl 0 requeue
  [ "$(cat "$WORK/ctl.out")" = "requeued 1 dead event" ] || fail "requeue printed: $(cat "$WORK/ctl.out")"
  ctl 0 requeue
  [ "$(cat "$WORK/ctl.out")" = "requeued 0 dead events" ] || fail "requeue printed: $(cat "$WORK/ctl.out")"
  ctl 0 status
  expect_row main "main sqlite yes no 0 0 3 0 sqlite:$WORK/main.db"
  expect_row other "other sqlite yes no 0 0 1 0 sqlite:$WORK/other.db"
  # They are due at once; main:2 goes right behind main:1, its key's earlier event.
  ctl 0 relay --once --stdout
  [ "$(grep -o '"event_id":"[a-z]*:[0-9]"' "$WORK/ctl.out" | paste -sd' ')" = \
    '"event_id":"main:1" "event_id":"main:2" "event_id":"main:3" "event_id":"other:1"' ] ||
    fail "the requeued events were not delivered: $(cat "$WORK/ctl.out")"
  ctl 1 requeue --store nope
  has ctl.err "uowctl: requeue: no store named 'nope'"
  empty ctl.out
}

# relay_usage MESSAGE ARGS...: uowctl relay ARGS exits 2 with MESSAGE and prints nothing else.
relay_usage() {
  local message=$1
  shift
  ctl 2 relay "$@"
  has ctl.err "uowctl relay: $message"
  has ctl.err "Run 'uowctl relay --help' for usage."
  empty ctl.out
}

case_relay_usage_errors_exit_2() {
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >uowctl.ini
  relay_usage "no sink: give --redis-stream URL --stream KEY, --command CMD or --stdout"
  relay_usage "no sink" --once --store main
  relay_usage "--stdout and --command both given: choose one sink" --stdout --command cat
  relay_usage "--command and --redis-stream both given: choose one sink" \
    --command cat --redis-stream redis://localhost --stream s
  relay_usage "option '--command' is given twice" --command cat --command=true
  relay_usage "--redis-stream needs --stream KEY" --redis-stream redis://localhost
  relay_usage "--stream goes with --redis-stream URL only" --stream s
  relay_usage "--stream goes with --redis-stream URL only" --stdout --stream s
  relay_usage "unknown option '--bogus'" --stdout --bogus
  relay_usage "unknown option '--json'" --stdout --json
  relay_usage "unexpected argument 'extra'" --stdout extra
  relay_usage "option '--command' needs a value" --command
  relay_usage "option '--command' needs a value" --command=
  relay_usage "option '--store' needs a value" --stdout --store
  relay_usage "--batch must be a whole number from 1 to 1000" --stdout --batch 0
  relay_usage "--batch must be a whole number from 1 to 1000" --stdout --batch=1001
  relay_usage "--max-attempts must be a whole number from 1 to 1000000" --stdout --max-attempts x
  relay_usage "--interval must be a number of seconds above 0" --stdout --interval 0
  relay_usage "--interval must be a number of seconds above 0" --stdout --interval 1s
  relay_usage "--interval must be a number of seconds above 0" --stdout --interval nan
  relay_usage "option '--once' is given twice" --stdout --once --once
  ctl 2 requeue --stdout
  has ctl.err "uowctl requeue: unknown option '--stdout'"
  ctl 2 requeue --store
  has ctl.err "uowctl requeue: option '--store' needs a value"
  [ ! -e main.db ] || fail "a usage error opened the store"
  # Good options are accepted, in either form.
  ctl 0 schema
  ctl 0 relay --once --store=main --batch 1000 --max-attempts=3 --interval 0.5 --command true
}

case_relay_exits_1_when_a_store_fails() {
  # No `uowctl schema`: the library's tables are missing.
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >uowctl.ini
  ctl 1 relay --once --stdout
  has ctl.err "uowctl: relay: store 'main'"
  has ctl.err "uow_"
  expect_progress ctl.err "delivered 0  retried 0  dead 0  purged 0  backlog ?"
  empty ctl.out
  ctl 1 relay --once --stdout --store nope
  has ctl.err "uowctl: relay: no store named 'nope'"
  lacks ctl.err "delivered"
  ctl 1 requeue
  has ctl.err "uowctl: requeue: store 'main'"
  printf '[store main]\nurl = sqlite:%s/no-such-dir/main.db\n' "$WORK" >lost.ini
  ctl 1 -c lost.ini relay --once --stdout
  has ctl.err "uowctl: add store 'main'"
  # A bad Redis URL: said without the URL, which may hold a password.
  ctl 1 relay --once --redis-stream 'http://user:Pw4uowctl@localhost/' --stream s
  has ctl.err "uowctl relay: cannot use --redis-stream"
  lacks ctl.err "Pw4uowctl"
}

# relay_stops_on SIGNAL: a relay running in the background delivers what
# comes, then stops on SIGNAL with status 0 and a last progress line.
relay_stops_on() {
  sqlite_store main
  add_event main.db u-1 1 first NULL NULL
  "$UOWCTL" relay --stdout --interval 0.2 >"$WORK/relay.out" 2>"$WORK/relay.err" &
  local pid=$! rc=0 _
  for _ in $(seq 300); do
    grep -q '"topic":"first"' "$WORK/relay.out" && grep -q '^delivered 1 ' "$WORK/relay.err" && break
    sleep 0.1
  done
  add_event main.db u-2 1 second NULL NULL
  for _ in $(seq 300); do
    grep -q '"topic":"second"' "$WORK/relay.out" && break
    sleep 0.1
  done
  kill -s "$1" "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$WORK/relay.err" >&2; fail "the relay exited $rc on SIG$1"; }
  [ "$(grep -c '"event_id"' "$WORK/relay.out")" -eq 2 ] || fail "expected 2 events: $(cat "$WORK/relay.out")"
  [ "$(grep -vc '^delivered ' "$WORK/relay.err")" -eq 0 ] || fail "unexpected stderr: $(cat "$WORK/relay.err")"
  [ "$(grep -c '^delivered ' "$WORK/relay.err")" -ge 2 ] || fail "no progress while running"
  expect_progress relay.err "delivered 2  retried 0  dead 0  purged 0  backlog 0"
  [ "$(sql main.db "SELECT group_concat(state) FROM uow_outbox")" = 1,1 ] ||
    fail "the events are not marked delivered"
}

case_relay_says_why_a_store_fails_and_keeps_running() {
  # No `uowctl schema` yet: every pass fails until the tables exist.
  printf '[store main]\nurl = sqlite:%s/main.db\n' "$WORK" >uowctl.ini
  "$UOWCTL" relay --stdout --interval 0.2 >"$WORK/relay.out" 2>"$WORK/relay.err" &
  local pid=$! rc=0 _
  for _ in $(seq 300); do
    grep -q '^delivered 0 ' "$WORK/relay.err" && break
    sleep 0.1
  done
  ctl 0 schema
  add_event main.db u-1 1 late NULL NULL
  for _ in $(seq 300); do
    grep -q '"topic":"late"' "$WORK/relay.out" && break
    sleep 0.1
  done
  kill -s TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$WORK/relay.err" >&2; fail "the relay exited $rc"; }
  grep -q '"topic":"late"' "$WORK/relay.out" || fail "the event was not delivered once the tables existed"
  [ "$(grep -c "^uowctl: relay: store 'main'" "$WORK/relay.err")" -eq 1 ] ||
    fail "the store's failure is not said once: $(cat "$WORK/relay.err")"
  expect_progress relay.err "delivered 1  retried 0  dead 0  purged 0  backlog 0"
}

case_relay_stops_on_sigterm() { relay_stops_on TERM; }
case_relay_stops_on_sigint() { relay_stops_on INT; }

fn="case_$CASE"
declare -F "$fn" >/dev/null || fail "no such case"
"$fn"
echo "PASS ($CASE)"
