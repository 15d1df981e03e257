/*
 * test_relay.c - delivering the outbox with a C callback sink: at least once
 * with stable event ids, order per key, retries with backoff, dead events and
 * requeue, purging, the SQLite lease, and on PostgreSQL several relays at once
 * and an event whose unit commits late. Runs on both stores.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <pthread.h>

#include "support.h"

/* ---- a recording sink ---- */

enum { MAX_SEEN = 4096 };

typedef struct seen_event {
  char event_id[64];
  char topic[32];
  char key[32];
  char payload[64];
  int64_t attempt;
  uint64_t stamp; /* when it was delivered, on a clock all recorders share */
} seen_event;

/* Orders deliveries across recorders (and so across relays). */
static uint64_t delivery_clock;

typedef struct recorder {
  pthread_mutex_t lock;
  seen_event seen[MAX_SEEN];
  size_t n;
  const char *fail_topic; /* events with this topic are refused */
  unsigned fail_times;    /* ... this many times (UINT_MAX: always) */
  unsigned failed;
  long delay_ms; /* taken before each batch, to widen the races between relays */
} recorder;

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int record(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                  size_t errcap) {
  recorder *r = ctx;
  if (r->delay_ms)
    pause_ms(r->delay_ms);
  pthread_mutex_lock(&r->lock);
  size_t i = 0;
  for (; i < n; i++) {
    const uow_delivery *d = &events[i];
    if (r->fail_topic && strcmp(d->topic, r->fail_topic) == 0 && r->failed < r->fail_times) {
      r->failed++;
      snprintf(err, errcap, "refused %s", d->event_id);
      break;
    }
    if (r->n < MAX_SEEN) {
      seen_event *s = &r->seen[r->n++];
      snprintf(s->event_id, sizeof(s->event_id), "%s", d->event_id);
      snprintf(s->topic, sizeof(s->topic), "%s", d->topic);
      snprintf(s->key, sizeof(s->key), "%s", d->key ? d->key : "");
      snprintf(s->payload, sizeof(s->payload), "%.*s", (int)d->payload_len,
               d->payload ? (const char *)d->payload : "");
      s->attempt = d->attempt;
      s->stamp = __atomic_add_fetch(&delivery_clock, 1, __ATOMIC_ACQ_REL);
    }
  }
  pthread_mutex_unlock(&r->lock);
  *delivered = i;
  return i == n ? UOW_OK : UOW_EIO;
}

static uow_sink sink_of(recorder *r) {
  uow_sink sink = {UOW_SINK_VERSION, "recorder", record, NULL, r};
  return sink;
}

static recorder *new_recorder(void) {
  recorder *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  pthread_mutex_init(&r->lock, NULL);
  return r;
}

static void free_recorder(recorder *r) {
  pthread_mutex_destroy(&r->lock);
  free(r);
}

/* One unit emitting `topic`/`key`/`payload`; commit or roll back. */
static void emit_one(uow_env *env, const char *topic, const char *key, const char *payload,
                     bool commit) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_emit(unit, topic, key, payload, strlen(payload)));
  if (commit)
    UOK(unit, uow_commit(unit));
  else
    UOK(unit, uow_rollback(unit));
  uow_end(unit);
}

static uow_relay_options quick(void) {
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 2;
  o.poll_ms = 5;
  return o;
}

/* ---- tests ---- */

static void relay_delivers_committed_events_once_with_their_event_id(void **state) {
  test_world *w = *state;
  emit_one(w->env, "user.registered", "u1", "ada", true);
  emit_one(w->env, "user.registered", "u2", "never", false);
  emit_one(w->env, "user.renamed", "u3", "ada l.", true);
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 2);
  assert_string_equal(r->seen[0].topic, "user.registered");
  assert_string_equal(r->seen[0].payload, "ada");
  assert_string_equal(r->seen[1].payload, "ada l.");
  assert_int_equal(r->seen[0].attempt, 1);
  char expected[64];
  snprintf(expected, sizeof(expected), "main:%lld",
           (long long)test_int(w->env, "SELECT min(id) FROM uow_outbox"));
  assert_string_equal(r->seen[0].event_id, expected);
  assert_int_equal(stats.delivered, 2);
  assert_int_equal(stats.backlog, 0);
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 1 AND delivered_at IS NOT NULL"), 2);
  /* A second pass finds nothing: delivered events are not handed out again. */
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 2);
  free_recorder(r);
}

static void relay_keeps_order_per_key_and_retries_a_failed_event_after_backoff(void **state) {
  test_world *w = *state;
  emit_one(w->env, "flaky", "k1", "a", true);
  emit_one(w->env, "fine", "k1", "b", true);
  emit_one(w->env, "fine", "k2", "c", true);
  recorder *r = new_recorder();
  r->fail_topic = "flaky";
  r->fail_times = 1;
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  /* The second pass must come within the backoff's lower half (jitter), which
   * a pass under valgrind (UOW_TEST_VALGRIND) can outlast at 200 ms. */
  const long backoff = getenv("UOW_TEST_VALGRIND") ? 2000 : 200;
  o.backoff_ms = backoff;
  o.backoff_max_ms = backoff;
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 0); /* "a" failed first, so nothing was taken */
  assert_int_equal(stats.retried, 1);
  assert_int_equal(test_count(w->env, "uow_outbox", "attempts = 1 AND last_error LIKE 'refused%'"),
                   1);
  /* "a" is backing off; "b" waits behind it (same key); "c" goes. */
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 1);
  assert_string_equal(r->seen[0].payload, "c");
  pause_ms(backoff + backoff / 4);
  /* Once "a" is due again, it and "b" behind it go in one pass, in order. */
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 3);
  assert_string_equal(r->seen[1].payload, "a");
  assert_int_equal(r->seen[1].attempt, 2);
  assert_string_equal(r->seen[2].payload, "b");
  free_recorder(r);
}

/* Events 1..n of `key` (payloads "1".."n"), one unit each; with `between`,
 * an event of a key of its own after each. */
static void emit_burst(uow_env *env, const char *key, int n, bool between) {
  char payload[16], other[16];
  for (int i = 1; i <= n; i++) {
    snprintf(payload, sizeof(payload), "%d", i);
    snprintf(other, sizeof(other), "other-%d", i);
    emit_one(env, "burst", key, payload, true);
    if (between)
      emit_one(env, "other", other, payload, true);
  }
}

/* The recorded events of `key` have payloads 1, 2, ... in delivery order;
 * returns how many there are. */
static size_t check_burst_order(const recorder *r, const char *key) {
  size_t count = 0;
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->seen[i].key, key) == 0) {
      count++;
      if (atoi(r->seen[i].payload) != (int)count)
        fail_msg("event %s of key %s came as number %zu", r->seen[i].payload, key, count);
    }
  return count;
}

/* `n` events of key "hot" (`between`: see emit_burst), relayed `batch` at a
 * time (0: the default) in `passes` passes: after each, `delivered[pass]`
 * events in all went out. Then none is pending, and "hot"'s came in order. */
static void relay_burst(test_world *w, int n, bool between, unsigned batch,
                        const uint64_t *delivered, int passes) {
  emit_burst(w->env, "hot", n, between);
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  o.batch = batch;
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  for (int pass = 0; pass < passes; pass++) {
    EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
    assert_int_equal(stats.delivered, delivered[pass]);
  }
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 0"), 0);
  assert_int_equal(check_burst_order(r, "hot"), n);
  free_recorder(r);
}

static void a_burst_of_one_key_goes_in_one_pass_in_order(void **state) {
  const uint64_t delivered[] = {40};
  relay_burst(*state, 20, true, 0, delivered, 1);
}

/* One head, and the room behind it filled with the rows of its key. */
static void a_burst_longer_than_the_batch_goes_batch_by_batch_in_order(void **state) {
  const uint64_t delivered[] = {4, 8, 10, 10};
  relay_burst(*state, 10, false, 4, delivered, 4);
}

/* Run `sql` in a unit of its own on store "main". */
static void exec_sql(uow_env *env, const char *sql) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_exec(unit, "main", sql, NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* A pending row that is not due (one backing off, say, behind a head that
 * uow_outbox_requeue revived) holds back the rows of its key behind it. */
static void a_row_that_is_not_due_holds_back_the_rows_behind_it(void **state) {
  test_world *w = *state;
  emit_burst(w->env, "k", 3, true);
  exec_sql(w->env,
           "UPDATE uow_outbox SET next_attempt_at = 9000000000000 WHERE id = "
           "(SELECT id FROM uow_outbox WHERE event_key = 'k' ORDER BY id LIMIT 1 OFFSET 1)");
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  EOK(w->env, uow_relay_once(w->env, &sink, &o, NULL));
  assert_int_equal(check_burst_order(r, "k"), 1);
  exec_sql(w->env, "UPDATE uow_outbox SET next_attempt_at = 0 WHERE event_key = 'k'");
  EOK(w->env, uow_relay_once(w->env, &sink, &o, NULL));
  assert_int_equal(check_burst_order(r, "k"), 3);
  free_recorder(r);
}

/* Events without a key are heads each, however the relay looks for heads:
 * after a pass that found fewer heads than its batch (on PostgreSQL the next
 * then looks for them key by key), keyless events and the rows of every key
 * still all go in one pass, in the order they were committed. */
static void keyless_events_and_every_key_go_in_one_pass_after_a_pass_with_few_heads(void **state) {
  test_world *w = *state;
  emit_one(w->env, "first", "k0", "0", true);
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats)); /* 1 head, batch 100 */
  assert_int_equal(stats.delivered, 1);
  const char *keys[] = {NULL, "a", NULL, "a", NULL, "b"};
  char payload[8];
  for (int i = 0; i < 6; i++) {
    snprintf(payload, sizeof(payload), "%d", i + 1);
    emit_one(w->env, "later", keys[i], payload, true);
  }
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(stats.delivered, 7);
  assert_int_equal(r->n, 7);
  for (int i = 1; i <= 6; i++) {
    snprintf(payload, sizeof(payload), "%d", i);
    assert_string_equal(r->seen[i].payload, payload);
  }
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 0"), 0);
  free_recorder(r);
}

static void event_is_dead_after_max_attempts_and_requeue_revives_it(void **state) {
  test_world *w = *state;
  emit_one(w->env, "poison", "p", "x", true);
  recorder *r = new_recorder();
  r->fail_topic = "poison";
  r->fail_times = 1000;
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  o.max_attempts = 3;
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  for (int i = 0; i < 20 && !stats.dead; i++) {
    EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
    pause_ms(5);
  }
  assert_int_equal(stats.dead, 1);
  assert_int_equal(stats.retried, 2);
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 2 AND attempts = 3"), 1);
  uow_store_status status;
  size_t count;
  EOK(w->env, uow_env_status(w->env, &status, 1, &count));
  assert_int_equal(status.outbox_dead, 1);
  assert_int_equal(status.outbox_pending, 0);
  /* Requeued, it is delivered once the sink takes it. */
  uint64_t revived = 0;
  EOK(w->env, uow_outbox_requeue(w->env, NULL, &revived));
  assert_int_equal(revived, 1);
  r->fail_topic = NULL;
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(r->n, 1);
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 1"), 1);
  assert_int_equal(uow_outbox_requeue(w->env, "nosuch", NULL), UOW_EINVAL);
  free_recorder(r);
}

static void delivered_events_are_purged_after_the_retention_period(void **state) {
  test_world *w = *state;
  emit_one(w->env, "old", "o", "1", true);
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  o.retention_ms = 1;
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  pause_ms(10);
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(stats.purged, 1);
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 0);
  free_recorder(r);
}

/* The purge reads every delivered row the outbox keeps, so relays of an
 * environment run it at most once a minute per store: a row past its
 * retention right after a purge waits for the next one, which another
 * environment (another process) may run at once. */
static void delivered_events_are_purged_at_most_once_a_minute(void **state) {
  test_world *w = *state;
  emit_one(w->env, "old", "o", "1", true);
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  o.retention_ms = 3600000; /* an hour: purges a minute apart */
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats)); /* delivers, purges nothing */
  assert_int_equal(stats.delivered, 1);
  exec_sql(w->env, "UPDATE uow_outbox SET delivered_at = 0"); /* past any retention */
  EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
  assert_int_equal(stats.purged, 0);
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 1);
  uow_env *other = test_world_other(w, NULL);
  EOK(other, uow_relay_once(other, &sink, &o, &stats));
  assert_int_equal(stats.purged, 1);
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 0);
  free_recorder(r);
}

static void relay_refuses_bad_options_and_sinks(void **state) {
  test_world *w = *state;
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  uow_relay_options o = quick();
  o.store = "nosuch";
  assert_int_equal(uow_relay_once(w->env, &sink, &o, NULL), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "nosuch");
  o = quick();
  o.version = 7;
  assert_int_equal(uow_relay_once(w->env, &sink, &o, NULL), UOW_EINVAL);
  uow_sink broken = sink;
  broken.deliver = NULL;
  assert_int_equal(uow_relay_once(w->env, &broken, NULL, NULL), UOW_EINVAL);
  assert_int_equal(uow_relay_run(w->env, &sink, NULL, NULL, NULL, NULL), UOW_EINVAL);
  assert_int_equal(uow_relay_once(NULL, &sink, NULL, NULL), UOW_EINVAL);
  free_recorder(r);
}

static void a_finished_relay_leaves_no_lease_behind(void **state) {
  test_world *w = *state;
  recorder *first = new_recorder(), *second = new_recorder();
  uow_sink a = sink_of(first), b = sink_of(second);
  emit_one(w->env, "one", "x", "1", true);
  EOK(w->env, uow_relay_once(w->env, &a, NULL, NULL));
  emit_one(w->env, "two", "y", "2", true);
  /* Another relay (another sink, so another holder) goes at once. */
  EOK(w->env, uow_relay_once(w->env, &b, NULL, NULL));
  assert_int_equal(first->n, 1);
  assert_int_equal(second->n, 1);
  assert_int_equal(test_count(w->env, "uow_relay_lease", NULL), 0);
  free_recorder(first);
  free_recorder(second);
}

/* ---- several relays ---- */

typedef struct runner {
  uow_env *env;
  recorder *rec;
  volatile int stop;
  uow_relay_stats last;
} runner;

static int note_progress(void *arg, const uow_relay_stats *stats) {
  runner *run = arg;
  run->last = *stats;
  return 0;
}

static void *relay_thread(void *arg) {
  runner *run = arg;
  uow_sink sink = sink_of(run->rec);
  uow_relay_options o = quick();
  o.batch = 7;
  uow_relay_run(run->env, &sink, &o, &run->stop, note_progress, run);
  return NULL;
}

/* Every event 1..events was delivered, and per key in ascending order, also
 * across recorders: the shared clock says which delivery came first. */
static void check_order_and_completeness(recorder **recs, size_t nrecs, int events, int keys) {
  uint64_t *stamp = calloc((size_t)events + 1, sizeof(uint64_t));
  int *key_of = calloc((size_t)events + 1, sizeof(int));
  assert_non_null(stamp);
  assert_non_null(key_of);
  for (size_t k = 0; k < nrecs; k++)
    for (size_t i = 0; i < recs[k]->n; i++) {
      int number = atoi(recs[k]->seen[i].payload);
      assert_true(number >= 1 && number <= events);
      stamp[number] = recs[k]->seen[i].stamp;
      key_of[number] = atoi(recs[k]->seen[i].key + 1);
    }
  for (int n = 1; n <= events; n++)
    assert_true(stamp[n] != 0);
  /* Events were emitted in ascending numbers: per key, each delivered after the one before. */
  for (int key = 0; key < keys; key++) {
    uint64_t last = 0;
    for (int n = 1; n <= events; n++)
      if (key_of[n] == key) {
        if (stamp[n] <= last)
          fail_msg("event %d of key k%d was delivered before an earlier one of its key", n, key);
        last = stamp[n];
      }
  }
  free(key_of);
  free(stamp);
}

static void two_relays_share_the_work_and_miss_nothing(void **state) {
  test_world *w = *state;
  /* A backlog of BACKLOG events waits when the relays start, so that their
   * first passes claim the events behind their heads too; the rest come
   * while they run. */
  enum { EVENTS = 300, KEYS = 10, BACKLOG = 100 };
  recorder *recs[2] = {new_recorder(), new_recorder()};
  /* A relay that delivers slowly holds its claim long: another one that took an
   * event behind one it holds would deliver first. */
  recs[0]->delay_ms = 2;
  recs[1]->delay_ms = 2;
  runner runs[2] = {{w->env, recs[0], 0, {0}}, {w->env, recs[1], 0, {0}}};
  pthread_t threads[2];
  for (int n = 1; n <= EVENTS; n++) {
    if (n == BACKLOG + 1)
      for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, relay_thread, &runs[i]), 0);
    char key[16], payload[16];
    snprintf(key, sizeof(key), "k%d", n % KEYS);
    snprintf(payload, sizeof(payload), "%d", n);
    emit_one(w->env, "count", key, payload, true);
    if (n % 50 == 0)
      emit_one(w->env, "count", key, "0", false); /* rolled back: never delivered */
  }
  for (int tries = 0; tries < 2000; tries++) {
    if (test_count(w->env, "uow_outbox", "state = 1") == EVENTS)
      break;
    pause_ms(10);
  }
  /* Atomic: the relays read the flag with an atomic load while this thread sets it. */
  __atomic_store_n(&runs[0].stop, 1, __ATOMIC_RELEASE);
  __atomic_store_n(&runs[1].stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 2; i++)
    pthread_join(threads[i], NULL);
  print_message("relay 1 delivered %zu, relay 2 delivered %zu\n", recs[0]->n, recs[1]->n);
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 1"), EVENTS);
  check_order_and_completeness(recs, 2, EVENTS, KEYS);
  if (!test_on_sqlite()) {
    /* Row locks: no event went to both relays. */
    assert_int_equal(recs[0]->n + recs[1]->n, EVENTS);
  } else {
    /* The lease: one relay did all the work. */
    assert_true(recs[0]->n == 0 || recs[1]->n == 0);
  }
  for (int i = 0; i < 2; i++)
    free_recorder(recs[i]);
}

typedef struct sleeper {
  uow_env *env;
  recorder *rec;
  int64_t poll_ms;
  volatile int stop;
  volatile int passes;
} sleeper;

static int count_pass(void *arg, const uow_relay_stats *stats) {
  sleeper *s = arg;
  __atomic_store_n(&s->passes, (int)stats->passes, __ATOMIC_RELEASE); /* the test thread polls it */
  return 0;
}

static void *sleeping_relay(void *arg) {
  sleeper *s = arg;
  uow_sink sink = sink_of(s->rec);
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.poll_ms = s->poll_ms;
  uow_relay_run(s->env, &sink, &o, &s->stop, count_pass, s);
  return NULL;
}

static size_t seen_count(recorder *r) {
  pthread_mutex_lock(&r->lock);
  size_t n = r->n;
  pthread_mutex_unlock(&r->lock);
  return n;
}

/* PostgreSQL: the commit wakes the relay (its poll, 30 s, is longer than the
 * test waits). SQLite cannot signal another process: its relay polls (50 ms). */
static void idle_relay_picks_up_new_commits(void **state) {
  test_world *w = *state;
  sleeper s = {w->env, new_recorder(), test_on_sqlite() ? 50 : 30000, 0, 0};
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, sleeping_relay, &s), 0);
  /* Its first pass found nothing: it is idle now. */
  for (int i = 0; i < 500 && !__atomic_load_n(&s.passes, __ATOMIC_ACQUIRE); i++)
    pause_ms(10);
  assert_true(__atomic_load_n(&s.passes, __ATOMIC_ACQUIRE) >= 1);
  pause_ms(300);
  /* Commits come every 2 s, so that one lands while the relay listens. */
  for (int i = 0; i < 100 && seen_count(s.rec) == 0; i++) {
    if (i % 10 == 0)
      emit_one(w->env, "wake", "w", "up", true);
    pause_ms(200);
  }
  size_t seen = seen_count(s.rec);
  __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
  emit_one(w->env, "wake", "w", "stop", true); /* wakes it to see the stop flag */
  pthread_join(thread, NULL);
  assert_true(seen >= 1);
  free_recorder(s.rec);
}

static void event_of_a_unit_that_commits_late_is_not_skipped(void **state) {
  test_world *w = *state;
  if (test_on_sqlite()) {
    /* One writer at a time: a late commit cannot overtake another one. */
    emit_one(w->env, "late", "l", "1", true);
  } else {
    /* An outbox row whose transaction commits after a later one's. */
    PGconn *late = PQconnectdb(getenv("UOW_TEST_PG_URL"));
    assert_int_equal(PQstatus(late), CONNECTION_OK);
    PQclear(PQexec(late, "BEGIN; INSERT INTO uow_outbox (unit_id, seq, kind, topic, event_key, "
                         "created_at, state, attempts, next_attempt_at) VALUES "
                         "('late', 1, 'event', 'late', 'late', 0, 0, 0, 0)"));
    recorder *r = new_recorder();
    uow_sink sink = sink_of(r);
    emit_one(w->env, "early", "early", "2", true);
    uow_relay_options o = quick();
    EOK(w->env, uow_relay_once(w->env, &sink, &o, NULL));
    assert_int_equal(r->n, 1);
    assert_string_equal(r->seen[0].topic, "early");
    PQclear(PQexec(late, "COMMIT"));
    PQfinish(late);
    EOK(w->env, uow_relay_once(w->env, &sink, &o, NULL));
    assert_int_equal(r->n, 2);
    assert_string_equal(r->seen[1].topic, "late");
    free_recorder(r);
    return;
  }
  recorder *r = new_recorder();
  uow_sink sink = sink_of(r);
  EOK(w->env, uow_relay_once(w->env, &sink, NULL, NULL));
  assert_int_equal(r->n, 1);
  free_recorder(r);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(relay_delivers_committed_events_once_with_their_event_id, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(relay_keeps_order_per_key_and_retries_a_failed_event_after_backoff, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(a_burst_of_one_key_goes_in_one_pass_in_order, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(a_burst_longer_than_the_batch_goes_batch_by_batch_in_order, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(a_row_that_is_not_due_holds_back_the_rows_behind_it, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(keyless_events_and_every_key_go_in_one_pass_after_a_pass_with_few_heads, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(event_is_dead_after_max_attempts_and_requeue_revives_it, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(delivered_events_are_purged_after_the_retention_period, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(delivered_events_are_purged_at_most_once_a_minute, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(relay_refuses_bad_options_and_sinks, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(a_finished_relay_leaves_no_lease_behind, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(two_relays_share_the_work_and_miss_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(event_of_a_unit_that_commits_late_is_not_skipped, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(idle_relay_picks_up_new_commits, test_setup, test_teardown),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("relay", tests, NULL, NULL);
}
