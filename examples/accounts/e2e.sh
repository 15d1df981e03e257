#!/usr/bin/env bash
# e2e.sh CASE - end-to-end checks of the accounts example. CTest runs each case
# in a directory of its own: the script runs the program the way a person
# would, then checks what it printed, its SQLite file (with the sqlite3 shell)
# and the mail log the mail command appended to.
#   ACCOUNTS      the built program
#   UOW_TEST_PG_URL  the throwaway PostgreSQL server (postgresql_demo_adds_up)
set -euo pipefail
: "${ACCOUNTS:?set ACCOUNTS to the accounts program}"
rm -f accounts.db accounts.db-wal accounts.db-shm outbox-mail.log

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
q() { sqlite3 accounts.db "$1"; }
expect() { # expect WHAT QUERY VALUE
  local got
  got=$(q "$2")
  [[ "$got" == "$3" ]] || fail "$1: expected $3, got $got"
}
# accounts ARGS...: run on accounts.db; sets $out and $status.
accounts() {
  set +e
  out=$("$ACCOUNTS" --db accounts.db "$@" 2>&1)
  status=$?
  set -e
  printf '%s\n' "$out"
}

case "${1:-}" in
duplicate_email_leaves_no_orphaned_account)
  accounts register ada@example.com "Ada Lovelace"
  [[ $status == 0 ]] || fail "first registration failed"
  expect "accounts before" "SELECT count(*) FROM accounts" 1
  accounts register ada@example.com "Ada Impostor"
  [[ $status == 1 ]] || fail "a duplicate email exited $status, not 1"
  grep -q "ada@example.com is already registered" <<<"$out" || fail "no clear message"
  expect "accounts after" "SELECT count(*) FROM accounts" 1
  expect "users" "SELECT name FROM account_users" "Ada Lovelace"
  expect "welcome mails" "SELECT count(*) FROM welcome_mails" 1
  expect "events" "SELECT count(*) FROM uow_outbox" 1
  ;;
bounced_welcome_mail_keeps_the_registration)
  accounts register bob@bounce.example "Bob Bounced"
  [[ $status == 0 ]] || fail "a bounced welcome mail failed the registration"
  grep -q "welcome mail bounced and undone, registration kept" <<<"$out" || fail "no message"
  accounts register grace@example.com "Grace Hopper"
  expect "accounts" "SELECT count(*) FROM accounts" 2
  expect "admins" "SELECT count(*) FROM account_users WHERE role = 'admin'" 2
  expect "welcome mails" "SELECT group_concat(address) FROM welcome_mails" grace@example.com
  expect "bob's event" \
    "SELECT count(*) FROM uow_outbox WHERE event_key = 'bob@bounce.example'
       AND CAST(payload AS TEXT) LIKE '%\"welcome_mail\":false%'" 1
  ;;
registration_event_is_delivered_to_the_mail_command)
  accounts register ada@example.com "Ada Lovelace"
  accounts register grace@example.com "Grace Hopper"
  accounts deliver
  [[ $status == 0 ]] || fail "deliver exited $status"
  grep -q "sent  main:1   user.registered to ada@example.com (with welcome mail)" <<<"$out" ||
    fail "deliver did not print what it sent"
  grep -q "2 sent to .*0 still pending" <<<"$out" || fail "deliver did not count 2"
  [[ $(wc -l <outbox-mail.log) == 2 ]] || fail "the mail log does not have 2 lines"
  grep -q '^{"event_id":"main:1","topic":"user.registered","key":"ada@example.com",.*\\"name\\":\\"Ada Lovelace\\"' \
    outbox-mail.log || fail "the mail log lacks ada's event"
  grep -q '"event_id":"main:2".*grace@example.com' outbox-mail.log || fail "no event for grace"
  expect "delivered" "SELECT count(*) FROM uow_outbox WHERE state = 1" 2
  ;;
failed_mail_command_keeps_the_event_for_a_retry)
  accounts register ada@example.com "Ada Lovelace"
  accounts --mail-log no-such-dir/outbox-mail.log deliver
  grep -q "the mail command failed" <<<"$out" || fail "the failure was not shown"
  grep -q "0 sent to .*1 to retry, 1 still pending" <<<"$out" || fail "wrong counts"
  expect "pending" "SELECT state || ',' || attempts FROM uow_outbox" "0,1"
  ;;
demo_adds_up)
  accounts demo
  [[ $status == 0 ]] || fail "the demo found figures that do not add up"
  grep -q "accounts before: 2, after: 2 (no orphaned account)" <<<"$out" || fail "no orphan line"
  [[ $(wc -l <outbox-mail.log) == 3 ]] || fail "the mail log does not have 3 lines"
  ;;
postgresql_demo_adds_up)
  : "${UOW_TEST_PG_URL:?}"
  set +e
  out=$("$ACCOUNTS" --store "$UOW_TEST_PG_URL" demo 2>&1)
  status=$?
  set -e
  printf '%s\n' "$out"
  [[ $status == 0 ]] || fail "the demo on PostgreSQL exited $status"
  [[ $(wc -l <outbox-mail.log) == 3 ]] || fail "the mail log does not have 3 lines"
  ;;
*)
  echo "usage: e2e.sh CASE" >&2
  exit 2
  ;;
esac
echo "ok: $1"
