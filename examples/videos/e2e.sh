#!/usr/bin/env bash
# e2e.sh CASE - end-to-end checks of the videos example. CTest runs each case
# in a directory of its own, holding the throwaway Redis server's lock: the
# script runs the program the way a person would, then checks what it
# printed, its SQLite file (sqlite3) and the embeddings in Redis (redis-cli).
# Other tests FLUSHDB the same server, so each case starts by deleting the
# keys of its own table (video_embeddings:*) and relies on nothing before it.
#   VIDEOS                 the built program
#   UOW_TEST_REDIS_URL     the throwaway Redis (redis+unix:///path/redis.sock)
#   UOW_TEST_REDIS_SOCKET  its socket path, for redis-cli
#   UOW_TEST_PG_URL        the throwaway PostgreSQL server (postgresql_* cases)
set -euo pipefail
: "${VIDEOS:?set VIDEOS to the videos program}"
: "${UOW_TEST_REDIS_URL:?}" "${UOW_TEST_REDIS_SOCKET:?}"
rm -f videos.db videos.db-wal videos.db-shm

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
q() { sqlite3 videos.db "$1"; }
r() { redis-cli -s "$UOW_TEST_REDIS_SOCKET" "$@"; }
expect() { # expect WHAT GOT WANTED
  [[ "$2" == "$3" ]] || fail "$1: expected $3, got $2"
}
# videos ARGS...: run on videos.db with the test Redis; sets $out and $status.
STORE=(--db videos.db)
REDIS=$UOW_TEST_REDIS_URL
videos() {
  set +e
  out=$("$VIDEOS" "${STORE[@]}" --redis "$REDIS" "$@" 2>&1)
  status=$?
  set -e
  printf '%s\n' "$out"
}
ingest_three() {
  videos ingest https://videos.example/pasta "Fresh pasta by hand" \
    "Make fresh pasta dough with flour and eggs. Roll it thin and cut tagliatelle."
  videos ingest https://videos.example/bicycle "Fixing a flat bicycle tire" \
    "Fix a flat bicycle tire at the roadside. Find the puncture in the inner tube and patch it."
  videos ingest https://videos.example/guitar "First guitar chords" \
    "Learn your first guitar chords. Strum G, C and D slowly."
  [[ $status == 0 ]] || fail "ingest exited $status"
}
r --scan --pattern 'video_embeddings:*' | xargs -r redis-cli -s "$UOW_TEST_REDIS_SOCKET" DEL >/dev/null

case "${1:-}" in
ingest_saves_metadata_and_embedding_together)
  videos ingest https://videos.example/pasta "Fresh pasta by hand" \
    "Make fresh pasta dough with flour and eggs. Roll it thin."
  [[ $status == 0 ]] || fail "ingest exited $status"
  grep -q "video 1   processing  Fresh pasta by hand" <<<"$out" || fail "no processing line"
  grep -q 'ready       "Make fresh pasta dough with flour and eggs."; embedding (64 dims) applied to Redis' \
    <<<"$out" || fail "no ready line"
  expect "metadata" "$(q "SELECT state || '|' || summary || '|' || version FROM videos")" \
    "ready|Make fresh pasta dough with flour and eggs.|2"
  expect "dims" "$(r HGET video_embeddings:1 dims)" 64
  expect "vector bytes" "$(r HSTRLEN video_embeddings:1 vector)" 256
  expect "embedding version" "$(r HGET video_embeddings:1 __version)" 1
  expect "intent applied" "$(q "SELECT kind || ',' || state FROM uow_outbox")" "intent,1"
  # Ingesting again replaces both, together: the embedding moves to version 2.
  videos ingest https://videos.example/pasta "Fresh pasta by hand" "Egg pasta, rolled by hand."
  [[ $status == 0 ]] || fail "the second ingest exited $status"
  expect "summary" "$(q "SELECT summary FROM videos")" "Egg pasta, rolled by hand."
  expect "embedding version" "$(r HGET video_embeddings:1 __version)" 2
  ;;
search_ranks_the_closest_video_first)
  ingest_three
  videos search "patch a flat tire on my bicycle"
  [[ $status == 0 ]] || fail "search exited $status"
  grep -q 'search "patch a flat tire on my bicycle": 3 videos ranked, 0 pending' <<<"$out" ||
    fail "not every video was ranked"
  grep -Eq '^  1\. [0-9.]+  video 2   Fixing a flat bicycle tire' <<<"$out" ||
    fail "the bicycle video is not first"
  videos --top 1 search "guitar chords to strum"
  grep -Eq '^  1\. [0-9.]+  video 3   First guitar chords' <<<"$out" || fail "guitar not first"
  ! grep -q '^  2\.' <<<"$out" || fail "--top 1 showed more than one"
  ;;
crash_between_the_stores_is_repaired_by_the_relay)
  ingest_three
  set +e
  UOW_CRASH_AT=before_intents_apply "$VIDEOS" --db videos.db --redis "$REDIS" ingest \
    https://videos.example/bread "Sourdough bread" "Bake sourdough bread with a starter."
  status=$?
  set -e
  [[ $status == 137 ]] || fail "the ingest was not killed after its commit (exit $status)"
  expect "committed" "$(q "SELECT state || '|' || summary FROM videos WHERE id = 4")" \
    "ready|Bake sourdough bread with a starter."
  expect "pending intent" "$(q "SELECT count(*) FROM uow_outbox WHERE state = 0")" 1
  expect "not in Redis" "$(r EXISTS video_embeddings:4)" 0
  videos search "sourdough bread starter"
  grep -q "pending  video 4   Sourdough bread: ready, its embedding is not in Redis yet" <<<"$out" ||
    fail "search did not say the embedding is pending"
  grep -q "3 videos ranked, 1 pending" <<<"$out" || fail "search ranked the pending video"
  # Replacing an embedding that is not in Redis yet is refused, and changes nothing.
  videos ingest https://videos.example/bread "Sourdough bread" "Bake it again."
  [[ $status == 1 ]] || fail "a re-ingest over a pending embedding exited $status"
  grep -q "its last embedding is not in Redis yet; run \`videos relay\`" <<<"$out" || fail "no message"
  expect "still ready" "$(q "SELECT state FROM videos WHERE id = 4")" ready
  videos relay
  [[ $status == 0 ]] || fail "relay exited $status"
  grep -q "pass 1: 1 embeddings applied to Redis, 0 pending" <<<"$out" || fail "relay did not say it"
  expect "dims" "$(r HGET video_embeddings:4 dims)" 64
  expect "vector bytes" "$(r HSTRLEN video_embeddings:4 vector)" 256
  videos search "sourdough bread starter"
  grep -q "4 videos ranked, 0 pending" <<<"$out" || fail "the video is still pending"
  grep -Eq '^  1\. [0-9.]+  video 4   Sourdough bread' <<<"$out" || fail "the bread video is not first"
  ;;
redis_down_during_ingest_still_commits_and_relay_applies_later)
  REDIS="redis+unix:///nonexistent/uow-videos/redis.sock" # a short path: sun_path holds 107 bytes
  videos ingest https://videos.example/knots "Sailing knots" "Tie a bowline knot. Sailors use it."
  [[ $status == 0 ]] || fail "ingest without Redis exited $status"
  grep -q "committed as an intent, not in Redis yet: run \`videos relay\`" <<<"$out" ||
    fail "ingest did not say the embedding is pending"
  expect "committed" "$(q "SELECT state FROM videos")" ready
  expect "pending intent" "$(q "SELECT count(*) FROM uow_outbox WHERE state = 0")" 1
  videos search "bowline"
  [[ $status == 1 ]] || fail "search without Redis exited $status"
  videos relay
  [[ $status == 1 ]] || fail "relay without Redis exited $status"
  grep -q "Redis refused or is unreachable; 1 intents stay pending" <<<"$out" || fail "no message"
  REDIS=$UOW_TEST_REDIS_URL
  expect "not in Redis" "$(r EXISTS video_embeddings:1)" 0
  videos relay
  [[ $status == 0 ]] || fail "relay exited $status"
  grep -q "1 embeddings applied to Redis, 0 pending" <<<"$out" || fail "relay did not apply it"
  expect "embedding version" "$(r HGET video_embeddings:1 __version)" 1
  videos search "bowline knot"
  grep -Eq '^  1\. [0-9.]+  video 1   Sailing knots' <<<"$out" || fail "search did not find it"
  ;;
demo_finds_each_video_by_its_text)
  videos
  [[ $status == 0 ]] || fail "the demo exited $status"
  grep -q "4 videos ready, each with its embedding, found by their text" <<<"$out" ||
    fail "no summary line"
  # Again: the same videos go through processing and ready again, but their
  # texts, so their embeddings, are the same: nothing is written to Redis.
  videos demo
  [[ $status == 0 ]] || fail "the second demo exited $status"
  grep -q "video 4   ready .* applied to Redis" <<<"$out" || fail "the embedding is not in Redis"
  expect "videos" "$(q "SELECT count(*) || ',' || min(state) || ',' || max(version) FROM videos")" \
    "4,ready,4"
  expect "embedding version" "$(r HGET video_embeddings:4 __version)" 1
  expect "intents" "$(q "SELECT count(*) FROM uow_outbox")" 4
  ;;
postgresql_ingest_and_search)
  : "${UOW_TEST_PG_URL:?}"
  psql -q "$UOW_TEST_PG_URL" -c "DROP TABLE IF EXISTS videos" >/dev/null
  STORE=(--store "$UOW_TEST_PG_URL")
  ingest_three
  grep -q "video 3   ready .* applied to Redis" <<<"$out" || fail "no ready line"
  expect "metadata" "$(psql -qtA "$UOW_TEST_PG_URL" -c \
    "SELECT count(*) FROM videos WHERE state = 'ready' AND version = 2")" 3
  expect "dims" "$(r HGET video_embeddings:2 dims)" 64
  videos search "patch a flat tire on my bicycle"
  grep -Eq '^  1\. [0-9.]+  video 2   Fixing a flat bicycle tire' <<<"$out" ||
    fail "the bicycle video is not first"
  ;;
*)
  echo "usage: e2e.sh CASE" >&2
  exit 2
  ;;
esac
echo "ok: $1"
