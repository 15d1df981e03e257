#!/usr/bin/env bash
# e2e.sh CASE - end-to-end checks of the alerts example. CTest runs each case
# in a directory of its own: the script writes a metrics file, runs the
# program the way a person would, then checks what it printed, its SQLite file
# (with the sqlite3 shell) and the log the notify command appended to.
#   ALERTS           the built program
#   UOW_TEST_PG_URL  the throwaway PostgreSQL server (postgresql_* cases)
set -euo pipefail
: "${ALERTS:?set ALERTS to the alerts program}"
rm -f alerts.db alerts.db-wal alerts.db-shm alerts-notify.log metrics.txt breach.txt rules.txt topics.txt

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
q() { sqlite3 alerts.db "$1"; }
expect() { # expect WHAT QUERY VALUE
  local got
  got=$(q "$2")
  [[ "$got" == "$3" ]] || fail "$1: expected $3, got $got"
}
# alerts ARGS...: sets $out and $status.
alerts() {
  set +e
  out=$("$ALERTS" "$@" 2>&1)
  status=$?
  set -e
  printf '%s\n' "$out"
}
# cpu above 90 for six samples in a row (two windows of 60 s), then back to normal.
sustained_cpu() {
  for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
    value=95
    ((i < 6)) || value=40
    echo "$((1700000000 + i * 20)) cpu $value"
    echo "$((1700000000 + i * 20)) mem 50"
  done >metrics.txt
}

case "${1:-}" in
open_alert_is_not_raised_twice_across_runs)
  sustained_cpu
  head -12 metrics.txt >breach.txt # the six samples over 90: the alert stays open
  alerts --db alerts.db --metrics breach.txt
  [[ $status == 0 ]] || fail "exited $status"
  grep -q "1 alerts raised, 0 resolved" <<<"$out" || fail "not exactly one alert raised"
  alerts --db alerts.db --metrics breach.txt # the same breach again, in a second run
  grep -q "0 alerts raised, 0 resolved" <<<"$out" || fail "the open alert was raised again"
  expect "alerts" "SELECT rule || ',' || state FROM alerts" "cpu_high,open"
  expect "events" "SELECT count(*) FROM uow_outbox WHERE topic = 'alert.raised'" 1
  ;;
alert_is_resolved_when_the_metric_recovers)
  sustained_cpu
  alerts --db alerts.db --metrics metrics.txt
  grep -q "1 alerts raised, 1 resolved" <<<"$out" || fail "not raised then resolved"
  expect "alert" "SELECT state || ',' || raised_at || ',' || resolved_at FROM alerts" \
    "resolved,1700000040,1700000120"
  ;;
raised_alerts_are_delivered)
  sustained_cpu
  alerts --db alerts.db --metrics metrics.txt
  grep -q 'notified main:1   alert.raised   {"alert_id":1,"rule":"cpu_high"' <<<"$out" ||
    fail "the raised alert was not printed"
  grep -q "2 delivered to .*0 still pending" <<<"$out" || fail "not 2 delivered"
  [[ $(wc -l <alerts-notify.log) == 2 ]] || fail "the notify log does not have 2 lines"
  grep -q '^{"event_id":"main:1","topic":"alert.raised","key":"cpu_high",' alerts-notify.log ||
    fail "the notify log lacks the raised alert"
  grep -q '"topic":"alert.resolved"' alerts-notify.log || fail "no resolved event"
  expect "delivered" "SELECT count(*) FROM uow_outbox WHERE state = 1" 2
  ;;
notify_command_gets_json_lines_on_stdin)
  sustained_cpu
  alerts --db alerts.db --metrics metrics.txt \
    --notify 'sed -n "s/.*\"topic\":\"\([a-z.]*\)\".*/\1/p" >> topics.txt'
  [[ $(cat topics.txt) == $'alert.raised\nalert.resolved' ]] || fail "not one line per event"
  ;;
failed_notify_command_keeps_the_events_pending)
  sustained_cpu
  alerts --db alerts.db --metrics metrics.txt --notify 'exit 3'
  [[ $status == 0 ]] || fail "exited $status"
  grep -q "the notify command failed: .*status 3" <<<"$out" || fail "the failure was not shown"
  expect "pending" "SELECT count(*) FROM uow_outbox WHERE state = 0" 2
  ;;
rules_and_metrics_files_are_checked)
  printf 'cpu_high: cpu > 90 for 3 samples\ncpu_hot cpu > 90\n' >rules.txt
  alerts --db alerts.db --rules rules.txt
  [[ $status == 2 ]] || fail "a bad rules file exited $status, not 2"
  grep -q "rules.txt:2: expected" <<<"$out" || fail "no FILE:LINE message"
  printf '1700000000 cpu 50\n1700000010 cpu lots\n' >metrics.txt
  alerts --db alerts.db --metrics metrics.txt
  [[ $status == 2 ]] || fail "a bad metrics file exited $status, not 2"
  grep -q "metrics.txt:2: expected" <<<"$out" || fail "no FILE:LINE message"
  ;;
generated_metrics_are_deterministic)
  alerts --db alerts.db --generate 200
  [[ $status == 0 ]] || fail "exited $status"
  first=$(q "SELECT group_concat(rule || ':' || raised_at || ':' || state, ' ') FROM alerts")
  [[ -n "$first" ]] || fail "the generated series raised no alert"
  rm -f alerts.db alerts.db-wal alerts.db-shm
  alerts --db alerts.db --generate 200
  expect "the same alerts" \
    "SELECT group_concat(rule || ':' || raised_at || ':' || state, ' ') FROM alerts" "$first"
  ;;
postgresql_raised_alerts_are_delivered)
  : "${UOW_TEST_PG_URL:?}"
  sustained_cpu
  alerts --store "$UOW_TEST_PG_URL" --reset --metrics metrics.txt
  [[ $status == 0 ]] || fail "exited $status"
  grep -q "1 alerts raised, 1 resolved" <<<"$out" || fail "not raised then resolved"
  grep -q "2 delivered to .*0 still pending" <<<"$out" || fail "not 2 delivered"
  [[ $(wc -l <alerts-notify.log) == 2 ]] || fail "the notify log does not have 2 lines"
  head -12 metrics.txt >breach.txt # the six samples over 90: the alert stays open
  alerts --store "$UOW_TEST_PG_URL" --metrics breach.txt
  grep -q "1 alerts raised, 0 resolved" <<<"$out" || fail "not raised on a new breach"
  alerts --store "$UOW_TEST_PG_URL" --metrics breach.txt # again: the alert is open
  grep -q "0 alerts raised, 0 resolved" <<<"$out" || fail "the open alert was raised again"
  grep -q "0 delivered to .*0 still pending" <<<"$out" || fail "something delivered twice"
  [[ $(wc -l <alerts-notify.log) == 3 ]] || fail "the notify log does not have 3 lines"
  ;;
*)
  echo "usage: e2e.sh CASE" >&2
  exit 2
  ;;
esac
echo "ok: $1"
