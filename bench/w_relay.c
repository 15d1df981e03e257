/*
 * w_relay.c - what happens after the commit, libuow only: the relay delivering
 * the outbox to a Redis stream (R1), and objects kept in Redis through
 * intents (R2), against the redis-server that bench/run.sh starts.
 *
 *   bench_relay R1 sqlite PATH | pg URL  REDIS_URL BATCH
 *   bench_relay R2 sqlite PATH | pg URL  REDIS_URL BATCH
 *
 * R1: units of R1_PER_UNIT events each commit R1 events in total (each event
 *     with a key of its own, ~100 bytes of payload), then uow_relay_run() with
 *     uow_sink_redis_stream() and BATCH events per claim runs until the
 *     backlog is 0. The stream must then hold exactly R1 entries (XLEN).
 *     Prints `result libuow R1-commit STORE events/s` (the producers) and
 *     `result libuow R1-bBATCH STORE events/s` (the relay). Then the same
 *     again with R1_KEYS keys in all (busy orders: each has R1 / R1_KEYS
 *     events, in order), the relay only: `R1-keysR1_KEYS-bBATCH`.
 * R2: R2 units, each creating (the first half) or updating (the second half:
 *     read from Redis, changed) one object of an entity mapped to the Redis
 *     store, with the SQL store holding the intents: `R2-units` units/s,
 *     the after-commit apply included. Then every intent row is made pending
 *     again (UPDATE uow_outbox SET state = 0 WHERE kind = 'intent', through
 *     uow_exec in a unit) and the relay re-applies them while Redis holds them
 *     all already: each is skipped as not newer, the idempotent path
 *     (`R2-skip` intents/s). Then, after FLUSHDB and the same reset, the relay
 *     applies them for real (`R2-apply` intents/s); both suffixed -bBATCH.
 *     After each step every object must be in Redis at version 2.
 *
 * Timing covers the work named only; set-up and checks are outside it. Lines
 * as in bench.h (result / na); exit 0 unless the arguments are wrong.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "uow.h"

static const char *const IMPL = "libuow";

#define R1_PER_UNIT 10
#define R1_KEYS 100
#define R1_STREAM "bench:events"
#define R1_TOPIC "order.placed"

typedef struct relay_sizes {
  int64_t r1_events; /* R1: events committed, then relayed */
  int64_t r2_units;  /* R2: units, half creating and half updating one Redis object */
} relay_sizes;

static relay_sizes sizes_get(void) {
  relay_sizes full = {20000, 5000};
  relay_sizes quick = {5000, 1000};
  return bench_quick() ? quick : full;
}

/* ---- the model: an object kept in Redis ---- */

typedef struct profile {
  int64_t id;
  char *name;
  double score;
  int64_t visits;
  int64_t version;
} profile;
static const uow_column profile_columns[] = {
    UOW_COLUMN(profile, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(profile, name, UOW_TEXT, 0),
    UOW_COLUMN(profile, score, UOW_DOUBLE, 0),
    UOW_COLUMN(profile, visits, UOW_INT64, 0),
    UOW_COLUMN(profile, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity profile_entity = UOW_ENTITY(profile, "profiles", profile_columns);

/* ---- Redis, the oracle (hiredis) ---- */

/* The socket path of a redis+unix:// URL (what scripts/redis-test-server.sh prints). */
static int socket_of(const char *url, char *buf, size_t cap) {
  static const char prefix[] = "redis+unix://";
  if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
    return -1;
  const char *path = url + sizeof(prefix) - 1;
  size_t len = strcspn(path, "?");
  if (len == 0 || len >= cap)
    return -1;
  memcpy(buf, path, len);
  buf[len] = '\0';
  return 0;
}

static redisContext *oracle(const char *url, char *why, size_t cap) {
  char path[4096];
  if (socket_of(url, path, sizeof(path))) {
    snprintf(why, cap, "not a redis+unix:// URL: %.200s", url);
    return NULL;
  }
  redisContext *c = redisConnectUnix(path);
  if (!c || c->err) {
    snprintf(why, cap, "cannot reach redis at %.200s: %s", path, c ? c->errstr : "out of memory");
    redisFree(c);
    return NULL;
  }
  return c;
}

/* Run a command that answers with an integer or a status; -1 on failure. */
static long long redis_int(redisContext *c, const char *cmd, const char *arg, char *why,
                           size_t cap) {
  redisReply *r = arg ? redisCommand(c, "%s %s", cmd, arg) : redisCommand(c, "%s", cmd);
  long long value = -1;
  if (!r)
    snprintf(why, cap, "redis %s: %s", cmd, c->errstr);
  else if (r->type == REDIS_REPLY_INTEGER)
    value = r->integer;
  else if (r->type == REDIS_REPLY_STATUS)
    value = 0;
  else
    snprintf(why, cap, "redis %s: %s", cmd, r->type == REDIS_REPLY_ERROR ? r->str : "odd reply");
  freeReplyObject(r);
  return value;
}

/* Every profile 1..n is in Redis at version `version`, and nothing else is. */
static int check_profiles(redisContext *c, int64_t n, int64_t version, const char *when, char *why,
                          size_t cap) {
  long long keys = redis_int(c, "DBSIZE", NULL, why, cap);
  if (keys != n) {
    if (keys >= 0)
      snprintf(why, cap, "%s: Redis holds %lld keys, expected %" PRId64, when, keys, n);
    return -1;
  }
  char key[48];
  for (int64_t id = 1; id <= n; id++) {
    snprintf(key, sizeof(key), "profiles:%" PRId64, id);
    redisAppendCommand(c, "HGET %s __version", key);
  }
  int bad = 0;
  char want[32];
  snprintf(want, sizeof(want), "%" PRId64, version);
  for (int64_t id = 1; id <= n; id++) {
    redisReply *r = NULL;
    if (redisGetReply(c, (void **)&r) != REDIS_OK) {
      snprintf(why, cap, "%s: redis HGET: %s", when, c->errstr);
      return -1;
    }
    if (!bad && (r->type != REDIS_REPLY_STRING || strcmp(r->str, want) != 0)) {
      snprintf(why, cap, "%s: profiles:%" PRId64 " is at version %s, expected %s", when, id,
               r->type == REDIS_REPLY_STRING ? r->str : "(none)", want);
      bad = 1;
    }
    freeReplyObject(r);
  }
  return bad ? -1 : 0;
}

/* ---- set-up ---- */

static void store_url(char *buf, size_t cap, const char *store, const char *where) {
  if (strcmp(store, "sqlite") == 0)
    snprintf(buf, cap, "sqlite:%s?journal_mode=wal&synchronous=full", where);
  else
    snprintf(buf, cap, "%s", where);
}

/* Store "main" (SQL) and, when redis_url is given, "cache" holding profiles. */
static int open_env(const char *url, const char *redis_url, uow_env **env, char *why, size_t cap) {
  int rc = uow_env_open(NULL, env);
  if (!rc)
    rc = uow_env_add_store(*env, "main", url);
  if (!rc && redis_url)
    rc = uow_env_add_store(*env, "cache", redis_url);
  if (!rc && redis_url)
    rc = uow_env_map(*env, &profile_entity, "cache");
  if (!rc)
    rc = uow_env_create_schema(*env);
  if (rc)
    snprintf(why, cap, "set-up: %s: %s", uow_strerror(rc),
             *env ? uow_env_errmsg(*env) : "no environment");
  return rc;
}

/* ---- the relay, until the backlog is 0 ---- */

typedef struct drain {
  uow_relay_stats last;
  uint64_t failed_passes; /* passes whose backlog was unknown (a store failed) */
  uint64_t max_passes;
} drain;

static int drained(void *arg, const uow_relay_stats *stats) {
  drain *d = arg;
  d->last = *stats;
  if (stats->backlog < 0)
    d->failed_passes++;
  return stats->backlog == 0 || stats->retried || stats->dead || d->failed_passes > 10 ||
         stats->passes >= d->max_passes;
}

/* Run the relay until nothing is pending; `*seconds` is how long it took. */
static int relay_all(uow_env *env, const uow_sink *sink, unsigned batch, int64_t expected,
                     double *seconds, char *why, size_t cap) {
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.batch = batch;
  drain d;
  memset(&d, 0, sizeof(d));
  /* Order per key may cost a few passes beyond one per batch. */
  d.max_passes = (uint64_t)(expected / batch) * 4 + 100;
  double t0 = bench_now();
  int rc = uow_relay_run(env, sink, &o, NULL, drained, &d);
  *seconds = bench_now() - t0;
  if (rc) {
    snprintf(why, cap, "relay: %s: %s", uow_strerror(rc), uow_env_errmsg(env));
    return rc;
  }
  if (d.last.backlog != 0 || d.last.delivered != (uint64_t)expected) {
    snprintf(why, cap,
             "relay stopped with backlog %" PRId64 " after %" PRIu64 " passes: delivered %" PRIu64
             " of %" PRId64 ", %" PRIu64 " retried, %" PRIu64 " dead (%s)",
             d.last.backlog, d.last.passes, d.last.delivered, expected, d.last.retried, d.last.dead,
             uow_env_errmsg(env));
    return UOW_EIO;
  }
  return UOW_OK;
}

static int unit_failed(uow_unit *unit, int rc, const char *what, char *why, size_t cap) {
  snprintf(why, cap, "%s: %s: %s", what, uow_strerror(rc), unit ? uow_errmsg(unit) : "");
  return rc;
}

/* ---- R1: events to a Redis stream ---- */

/* `events` events in units of R1_PER_UNIT, event i with key "order-<i mod keys>". */
static int commit_events(uow_env *env, int64_t events, int64_t keys, char *why, size_t cap) {
  char key[32], payload[160];
  int rc = UOW_OK;
  for (int64_t first = 0; first < events && !rc; first += R1_PER_UNIT) {
    uow_unit *unit = NULL;
    if ((rc = uow_begin(env, &unit))) {
      snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
      break;
    }
    for (int64_t i = first; i < first + R1_PER_UNIT && i < events && !rc; i++) {
      snprintf(key, sizeof(key), "order-%08" PRId64, i % keys);
      int len = snprintf(payload, sizeof(payload),
                         "{\"order\":%" PRId64 ",\"customer\":%" PRId64
                         ",\"amount\":%.2f,\"currency\":\"EUR\",\"lines\":%d}",
                         i, i % 997, (double)(i % 10000) / 100.0, (int)(i % 7) + 1);
      rc = uow_emit(unit, R1_TOPIC, key, payload, (size_t)len);
    }
    if (!rc)
      rc = uow_commit(unit);
    if (rc)
      unit_failed(unit, rc, "commit events", why, cap);
    uow_end(unit);
  }
  return rc;
}

/* Relay the events in the outbox to the stream, which must hold `events`
 * entries afterwards; prints `workload`'s figure. */
static int r1_relay(uow_env *env, redisContext *c, const uow_sink *sink, const char *workload,
                    const char *store, unsigned batch, int64_t events, char *why, size_t cap) {
  double seconds = 0;
  int rc = relay_all(env, sink, batch, events, &seconds, why, cap);
  if (!rc) {
    long long len = redis_int(c, "XLEN", R1_STREAM, why, cap);
    if (len != events) {
      if (len >= 0)
        snprintf(why, cap, "the stream holds %lld entries, expected %" PRId64, len, events);
      rc = UOW_EIO;
    }
  }
  if (!rc)
    bench_result(IMPL, workload, store, (double)events / seconds, "events/s");
  return rc;
}

static int r1(const char *url, const char *store, const char *redis_url, unsigned batch, char *why,
              size_t cap) {
  relay_sizes sizes = sizes_get();
  const int64_t n = sizes.r1_events;
  char workload[32];
  redisContext *c = oracle(redis_url, why, cap);
  if (!c)
    return UOW_EIO;
  uow_env *env = NULL;
  uow_sink sink = {0};
  int rc = redis_int(c, "DEL", R1_STREAM, why, cap) < 0 ? UOW_EIO : UOW_OK;
  if (!rc)
    rc = open_env(url, NULL, &env, why, cap);
  if (!rc) {
    double t0 = bench_now();
    rc = commit_events(env, n, n, why, cap);
    double t1 = bench_now();
    if (!rc)
      bench_result(IMPL, "R1-commit", store, (double)n / (t1 - t0), "events/s");
  }
  if (!rc && (rc = uow_sink_redis_stream(redis_url, R1_STREAM, &sink)))
    snprintf(why, cap, "redis stream sink: %s", uow_strerror(rc));
  snprintf(workload, sizeof(workload), "R1-b%u", batch);
  if (!rc)
    rc = r1_relay(env, c, &sink, workload, store, batch, n, why, cap);
  /* Busy keys: a key's events wait for the ones before them. */
  if (!rc && redis_int(c, "DEL", R1_STREAM, why, cap) < 0)
    rc = UOW_EIO;
  if (!rc)
    rc = commit_events(env, n, R1_KEYS, why, cap);
  snprintf(workload, sizeof(workload), "R1-keys%d-b%u", R1_KEYS, batch);
  if (!rc)
    rc = r1_relay(env, c, &sink, workload, store, batch, n, why, cap);
  uow_sink_close(&sink);
  uow_env_close(env);
  redisFree(c);
  return rc;
}

/* ---- R2: objects in Redis through intents ---- */

typedef struct touch {
  int64_t id;
  int create;
} touch;

static int touch_profile(uow_unit *unit, void *arg) {
  const touch *t = arg;
  profile *p;
  int rc;
  if (t->create) {
    if ((rc = uow_new(unit, &profile_entity, (void **)&p)))
      return rc;
    char name[32];
    snprintf(name, sizeof(name), "learner-%06" PRId64, t->id);
    p->id = t->id;
    p->name = uow_strdup(unit, name);
    p->score = (double)(t->id % 100) / 4.0;
    p->visits = 1;
    return p->name ? UOW_OK : UOW_ENOMEM;
  }
  if ((rc = uow_get(unit, &profile_entity, &t->id, (void **)&p)))
    return rc;
  p->score += 0.5;
  p->visits++;
  return UOW_OK;
}

/* Make every intent row pending again, as if the after-commit apply had not happened. */
static int reset_intents(uow_env *env, int64_t expected, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  int64_t affected = 0;
  rc = uow_exec_ex(unit, "main", "UPDATE uow_outbox SET state = 0 WHERE kind = 'intent'", NULL, 0,
                   &affected);
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    unit_failed(unit, rc, "reset the intents", why, cap);
  uow_end(unit);
  if (!rc && affected != expected) {
    snprintf(why, cap, "reset %" PRId64 " intent rows, expected %" PRId64, affected, expected);
    rc = UOW_EIO;
  }
  return rc;
}

/* Nothing left pending in the SQL store's outbox. */
static int check_applied(uow_env *env, char *why, size_t cap) {
  uow_store_status st[2];
  size_t count = 0;
  int rc = uow_env_status(env, st, 2, &count);
  if (rc || count < 1 || !st[0].reachable) {
    snprintf(why, cap, "status: %s", rc ? uow_strerror(rc) : st[0].error);
    return UOW_EIO;
  }
  if (st[0].outbox_pending != 0) {
    snprintf(why, cap, "%" PRId64 " intents still pending after their units' commits",
             st[0].outbox_pending);
    return UOW_EIO;
  }
  return UOW_OK;
}

/* An event sink that is never called: R2 writes intents only. */
static int refuse(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                  size_t errcap) {
  (void)ctx;
  (void)events;
  (void)n;
  *delivered = 0;
  snprintf(err, errcap, "R2 emits no events");
  return UOW_EINVAL;
}

static int r2(const char *url, const char *store, const char *redis_url, unsigned batch, char *why,
              size_t cap) {
  relay_sizes sizes = sizes_get();
  int64_t units = sizes.r2_units - sizes.r2_units % 2, objects = units / 2;
  redisContext *c = oracle(redis_url, why, cap);
  if (!c)
    return UOW_EIO;
  uow_env *env = NULL;
  int rc = redis_int(c, "FLUSHDB", NULL, why, cap) < 0 ? UOW_EIO : UOW_OK;
  if (!rc)
    rc = open_env(url, redis_url, &env, why, cap);
  if (!rc) {
    double t0 = bench_now();
    for (int64_t k = 0; k < units && !rc; k++) {
      touch t = {k < objects ? k + 1 : k - objects + 1, k < objects};
      if ((rc = uow_run(env, touch_profile, &t, NULL)))
        snprintf(why, cap, "unit %" PRId64 ": %s: %s", k, uow_strerror(rc), uow_env_errmsg(env));
    }
    double t1 = bench_now();
    if (!rc && !(rc = check_applied(env, why, cap)) &&
        !(rc = check_profiles(c, objects, 2, "after the units", why, cap) ? UOW_EIO : UOW_OK))
      bench_result(IMPL, "R2-units", store, (double)units / (t1 - t0), "units/s");
  }
  uow_sink events = {UOW_SINK_VERSION, "none", refuse, NULL, NULL};
  const char *steps[2] = {"skip", "apply"};
  for (int step = 0; step < 2 && !rc; step++) {
    char workload[32];
    snprintf(workload, sizeof(workload), "R2-%s-b%u", steps[step], batch);
    if (step == 1 && redis_int(c, "FLUSHDB", NULL, why, cap) < 0)
      rc = UOW_EIO;
    if (!rc)
      rc = reset_intents(env, units, why, cap);
    double seconds = 0;
    if (!rc)
      rc = relay_all(env, &events, batch, units, &seconds, why, cap);
    if (!rc && check_profiles(c, objects, 2, workload, why, cap))
      rc = UOW_EIO;
    if (!rc)
      bench_result(IMPL, workload, store, (double)units / seconds, "intents/s");
  }
  uow_env_close(env);
  redisFree(c);
  return rc;
}

/* ---- main ---- */

static int usage(void) {
  fprintf(stderr, "usage: bench_relay R1|R2 sqlite PATH | pg URL  REDIS_URL BATCH\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc != 6)
    return usage();
  const char *workload = argv[1], *store = argv[2];
  char *end;
  unsigned long batch = strtoul(argv[5], &end, 10);
  if ((strcmp(workload, "R1") != 0 && strcmp(workload, "R2") != 0) ||
      (strcmp(store, "sqlite") != 0 && strcmp(store, "pg") != 0) || *end || batch == 0 ||
      batch > 1000)
    return usage();
  char url[4096], why[2048] = "";
  store_url(url, sizeof(url), store, argv[3]);
  int rc;
  if (strcmp(workload, "R1") == 0)
    rc = r1(url, store, argv[4], (unsigned)batch, why, sizeof(why));
  else
    rc = r2(url, store, argv[4], (unsigned)batch, why, sizeof(why));
  if (rc) {
    char name[32];
    snprintf(name, sizeof(name), "%s-b%lu", workload, batch);
    bench_na(IMPL, name, store, "%s", why);
  }
  return 0;
}
