/*
 * test_alloc_relay.c - allocation-failure torture of outbox delivery, on the
 * store under test (SQLite or PostgreSQL), against the test Redis:
 *
 *  - uow_outbox_requeue and uow_relay_once with a C callback sink (then
 *    uow_relay_run, idle), with the command sink and with the Redis stream
 *    sink (their constructors under failure too): after a run that failed
 *    anywhere, clean passes must still deliver every event at least once and
 *    each key's events in order;
 *  - objects in Redis through intents: a unit that reads (uow_fetch and
 *    uow_get), changes, creates and deletes Redis objects beside a SQL write,
 *    and a relay pass that applies pending intents. The unit's SQL rows and intent rows are all or
 *    nothing, and once clean relay passes ran, Redis holds what committed.
 *
 * Each run must return 0 or UOW_ENOMEM with a message and leak nothing
 * (torture.c fails each allocation in turn).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "torture.h"

/* ---- Redis itself, for the checks ---- */

/* Run a command on the test Redis; the reply, which the caller frees. */
static redisReply *redis_command(const char *fmt, ...) {
  const char *socket = getenv("UOW_TEST_REDIS_SOCKET");
  assert_non_null(socket);
  redisContext *c = redisConnectUnix(socket);
  if (!c || c->err)
    fail_msg("cannot reach the test redis at %s", socket);
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!r)
    fail_msg("redis: %s", c->errstr);
  redisFree(c);
  return r;
}

static void redis_do(const char *fmt, const char *arg) { freeReplyObject(redis_command(fmt, arg)); }

/* ---- scenarios: the relay ---- */

/*
 * The outbox holds 7 events in 3 units: keys k1 (3 events), k2 (2), k3 (1,
 * dead until requeued) and one without a key. Payloads say "<key>#<n>" ("-"
 * for no key), n counting per key, so a log of deliveries tells whether each
 * key's events came in order.
 */
enum { EVENTS = 7, LOG_MAX = 256 };

typedef enum sink_kind { SINK_CALLBACK, SINK_COMMAND, SINK_REDIS_STREAM } sink_kind;

#define STREAM "alloc:relay:stream"

typedef struct relay_world {
  uow_env *env; /* test_env_open(): the database; it seeds events and runs the clean passes */
  sink_kind kind;
  char log_path[1100]; /* where the command sink's command appends */
  /* the payloads delivered, in order: by the callback, or read back from the
   * command's file or the stream */
  char log[LOG_MAX][16];
  size_t logged;
} relay_world;

static int record(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                  size_t errcap) {
  relay_world *r = ctx;
  (void)err;
  (void)errcap;
  for (size_t i = 0; i < n && r->logged < LOG_MAX; i++)
    snprintf(r->log[r->logged++], sizeof(r->log[0]), "%.*s", (int)events[i].payload_len,
             events[i].payload ? (const char *)events[i].payload : "");
  *delivered = n;
  return UOW_OK;
}

static void relay_setup(void *ctx) {
  relay_world *r = ctx;
  assert_int_equal(test_env_open(&r->env), UOW_OK);
  snprintf(r->log_path, sizeof(r->log_path), "%s/deliveries.jsonl", test_dir());
}

static void relay_teardown(void *ctx) {
  relay_world *r = ctx;
  test_env_close(r->env);
}

/* One unit emitting `n` events, each a key (NULL: none) and a payload. */
static void emit_unit(uow_env *env, const char *const (*events)[2], size_t n) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  for (size_t i = 0; i < n; i++)
    UOK(unit, uow_emit(unit, "relay.test", events[i][0], events[i][1], strlen(events[i][1])));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

static void relay_prepare(void *ctx, long point) {
  relay_world *r = ctx;
  (void)point;
  torture_env_exec(r->env, "DELETE FROM uow_outbox", "DELETE FROM uow_relay_lease", NULL);
  static const char *const first[][2] = {{"k1", "k1#1"}, {"k2", "k2#1"}, {NULL, "-#1"}};
  static const char *const second[][2] = {{"k1", "k1#2"}, {"k3", "k3#1"}};
  static const char *const third[][2] = {{"k2", "k2#2"}, {"k1", "k1#3"}};
  emit_unit(r->env, first, 3);
  emit_unit(r->env, second, 2);
  emit_unit(r->env, third, 2);
  torture_env_exec(r->env, "UPDATE uow_outbox SET state = 2, attempts = 10 WHERE event_key = 'k3'",
                   NULL);
  r->logged = 0;
  unlink(r->log_path);
  if (r->kind == SINK_REDIS_STREAM)
    redis_do("DEL %s", STREAM);
}

static uow_relay_options quick_relay(void) {
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 2;
  return o;
}

/* The sink of the scenario's kind (uow_sink_close() it); 0 or the constructor's code. */
static int make_sink(relay_world *r, uow_sink *sink) {
  if (r->kind == SINK_CALLBACK) {
    uow_sink callback = {UOW_SINK_VERSION, "record", record, NULL, r};
    *sink = callback;
    return UOW_OK;
  }
  if (r->kind == SINK_REDIS_STREAM)
    return uow_sink_redis_stream(getenv("UOW_TEST_REDIS_URL"), STREAM, sink);
  char command[1200];
  snprintf(command, sizeof(command), "cat >> '%s'", r->log_path);
  return uow_sink_command(command, sink);
}

static int stop_after_two(void *arg, const uow_relay_stats *stats) {
  (void)stats;
  return ++*(int *)arg >= 2;
}

static int relay_run(void *ctx, char *msg, size_t cap) {
  relay_world *r = ctx;
  uow_env *env = NULL;
  uow_sink sink;
  memset(&sink, 0, sizeof(sink));
  uint64_t revived = 0;
  int rc = torture_open_env(test_url(), false, &env, msg, cap);
  ENV_STEP(env, uow_outbox_requeue(env, NULL, &revived));
  if (!rc && revived != 1) {
    snprintf(msg, cap, "requeue revived %llu events, not 1", (unsigned long long)revived);
    rc = TORTURE_UNEXPECTED;
  }
  if (!rc && (rc = make_sink(r, &sink)))
    snprintf(msg, cap, "making the sink: %s", uow_strerror(rc));
  uow_relay_options o = quick_relay();
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  for (int pass = 0; !rc && pass < 3; pass++) /* one event per key and pass */
    ENV_STEP(env, uow_relay_once(env, &sink, &o, &stats));
  /* Then a relay loop that finds nothing, listens (PostgreSQL) and stops. */
  o.poll_ms = 1;
  int passes = 0;
  if (r->kind == SINK_CALLBACK)
    ENV_STEP(env, uow_relay_run(env, &sink, &o, NULL, stop_after_two, &passes));
  uow_sink_close(&sink);
  uow_env_close(env);
  return rc;
}

/* Read the command sink's log into r->log (the payload of each line). */
static void read_command_log(relay_world *r) {
  FILE *f = fopen(r->log_path, "r");
  if (!f)
    return; /* nothing delivered */
  char line[2048];
  while (fgets(line, sizeof(line), f) && r->logged < LOG_MAX) {
    const char *p = strstr(line, "\"payload\":\"");
    if (!p)
      fail_msg("a line without a payload: %s", line);
    p += strlen("\"payload\":\"");
    snprintf(r->log[r->logged++], sizeof(r->log[0]), "%.*s", (int)strcspn(p, "\""), p);
  }
  fclose(f);
}

/* Read the stream into r->log (the payload field of each entry). */
static void read_stream(relay_world *r) {
  redisReply *reply = redis_command("XRANGE %s - +", STREAM);
  assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
  for (size_t i = 0; i < reply->elements && r->logged < LOG_MAX; i++) {
    const redisReply *fields = reply->element[i]->element[1];
    for (size_t f = 0; f + 1 < fields->elements; f += 2)
      if (strcmp(fields->element[f]->str, "payload") == 0)
        snprintf(r->log[r->logged++], sizeof(r->log[0]), "%.*s", (int)fields->element[f + 1]->len,
                 fields->element[f + 1]->str);
  }
  freeReplyObject(reply);
}

/* Every event at least once; an event only after every earlier one of its key. */
static bool deliveries_as_promised(relay_world *r) {
  static const char *const expected[EVENTS] = {"k1#1", "k1#2", "k1#3", "k2#1",
                                               "k2#2", "k3#1", "-#1"};
  bool ok = true;
  for (size_t e = 0; e < EVENTS; e++) {
    size_t first = SIZE_MAX;
    for (size_t i = 0; i < r->logged && first == SIZE_MAX; i++)
      if (strcmp(r->log[i], expected[e]) == 0)
        first = i;
    if (first == SIZE_MAX) {
      fprintf(stderr, "event %s was never delivered\n", expected[e]);
      ok = false;
    }
  }
  for (size_t i = 0; i < r->logged; i++) {
    char key[8];
    int n = 0;
    if (sscanf(r->log[i], "%7[^#]#%d", key, &n) != 2 || strcmp(key, "-") == 0)
      continue;
    for (int m = 1; m < n; m++) {
      char earlier[32];
      snprintf(earlier, sizeof(earlier), "%s#%d", key, m);
      bool before = false;
      for (size_t j = 0; j < i && !before; j++)
        before = strcmp(r->log[j], earlier) == 0;
      if (!before) {
        fprintf(stderr, "event %s was delivered before %s\n", r->log[i], earlier);
        ok = false;
      }
    }
  }
  return ok;
}

static bool relay_check(void *ctx, int rc, long point) {
  relay_world *r = ctx;
  (void)rc;
  (void)point;
  /* Clean passes deliver what the failed run left, then every event is delivered. */
  uow_env *env = r->env;
  uow_sink sink;
  EOK(env, uow_outbox_requeue(env, NULL, NULL));
  assert_int_equal(make_sink(r, &sink), UOW_OK);
  /* A lease the failed run could not give back expires in 30 s: end it now. */
  torture_env_exec(env, "DELETE FROM uow_relay_lease", NULL);
  uow_relay_options o = quick_relay();
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  stats.backlog = -1;
  for (int pass = 0; pass < 200 && stats.backlog != 0; pass++) {
    uint64_t before = stats.delivered;
    EOK(env, uow_relay_once(env, &sink, &o, &stats));
    if (stats.delivered == before && stats.backlog) {
      struct timespec pause = {0, 1000 * 1000}; /* a retry backs off 1 to 2 ms */
      nanosleep(&pause, NULL);
    }
  }
  uow_sink_close(&sink);
  if (r->kind == SINK_COMMAND)
    read_command_log(r);
  else if (r->kind == SINK_REDIS_STREAM)
    read_stream(r);
  bool ok = deliveries_as_promised(r);
  long long left = torture_int(test_url(), "SELECT count(*) FROM uow_outbox WHERE state <> 1");
  if (left) {
    fprintf(stderr, "%lld events are not marked delivered\n", left);
    ok = false;
  }
  return ok;
}

static void relay_scenario(sink_kind kind) {
  static const char *const kinds[] = {"callback", "command", "redis stream"};
  relay_world *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  r->kind = kind;
  char name[64];
  snprintf(name, sizeof(name), "relay %s sink %s", kinds[kind], test_store_kind());
  torture_scenario s = {name, r, relay_setup, relay_teardown, relay_prepare, relay_run, relay_check,
                        NULL, 0};
  torture_run(&s);
  free(r);
}

static void relay_with_a_callback_sink_delivers_every_event_after_any_failure(void **state) {
  (void)state;
  relay_scenario(SINK_CALLBACK);
}

static void relay_with_a_command_sink_delivers_every_event_after_any_failure(void **state) {
  (void)state;
  relay_scenario(SINK_COMMAND);
}

static void relay_to_a_redis_stream_delivers_every_event_after_any_failure(void **state) {
  (void)state;
  relay_scenario(SINK_REDIS_STREAM);
}

/* ---- scenario: objects in Redis through intents ---- */

typedef struct cards_world {
  uow_env *env; /* test_env_open(), with the cache store */
  int commit;   /* the unit's commit */
} cards_world;

/* Store "cache" (the test Redis) with cards mapped to it, on an environment from torture_open_env.
 */
static int add_cache(uow_env *env, char *msg, size_t cap) {
  int rc = uow_env_add_store(env, "cache", getenv("UOW_TEST_REDIS_URL"));
  if (!rc)
    rc = uow_env_map(env, &card_entity, "cache");
  if (rc)
    TORTURE_SAY("opening", uow_env_errmsg(env));
  return rc;
}

static void cards_setup(void *ctx) {
  cards_world *w = ctx;
  char msg[TORTURE_MSG];
  assert_int_equal(test_env_open(&w->env), UOW_OK);
  if (add_cache(w->env, msg, sizeof(msg)))
    fail_msg("setup: %s", msg);
}

static void cards_teardown(void *ctx) {
  cards_world *w = ctx;
  freeReplyObject(redis_command("DEL cards:1 cards:2 cards:3"));
  test_env_close(w->env);
}

/* A sink for events that takes everything: only intents matter here. */
static int take_all(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                    size_t errcap) {
  (void)ctx;
  (void)events;
  (void)err;
  (void)errcap;
  *delivered = n;
  return UOW_OK;
}

/* Cards 1 and 3 at version 1, written by a unit; its intent rows are made
 * pending again, so the run's relay pass applies them once more (Redis
 * ignores them: not newer). User 1001 beside them in SQL. */
static void cards_prepare(void *ctx, long point) {
  cards_world *w = ctx;
  (void)point;
  freeReplyObject(redis_command("DEL cards:1 cards:2 cards:3"));
  torture_env_exec(w->env, "DELETE FROM users", "DELETE FROM uow_outbox",
                   "INSERT INTO users (id, email, name, score, version) "
                   "VALUES (1001, 'ada@example.com', 'Ada', 10, 1)",
                   NULL);
  uow_unit *unit;
  card *c;
  EOK(w->env, uow_begin(w->env, &unit));
  for (int64_t id = 1; id <= 3; id += 2) {
    UOK(unit, uow_new(unit, &card_entity, (void **)&c));
    c->id = id;
    c->title = id == 1 ? "one" : "three";
    c->score = 0.5;
  }
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  torture_env_exec(w->env, "UPDATE uow_outbox SET state = 0 WHERE kind = 'intent'", NULL);
}

static int cards_run(void *ctx, char *msg, size_t cap) {
  cards_world *w = ctx;
  uow_env *env = NULL;
  uow_unit *unit = NULL;
  card *one = NULL, *two = NULL, *three = NULL;
  user *u = NULL;
  int64_t id1 = 1, id3 = 3, ada = 1001;
  w->commit = TORTURE_NOT_REACHED;
  int rc = torture_open_env(test_url(), true, &env, msg, cap);
  if (!rc)
    rc = add_cache(env, msg, cap);
  /* The seeded intents again: the relay's intent sink under failure. */
  uow_sink sink = {UOW_SINK_VERSION, "all", take_all, NULL, NULL};
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 2;
  ENV_STEP(env, uow_relay_once(env, &sink, &o, NULL));
  ENV_STEP(env, uow_begin(env, &unit));
  /* Card 3 and user 1001 read at once (Redis item by item); card 1 alone. */
  uow_fetch_item items[2] = {uow_fetch_get(&card_entity, &id3, 0, (void **)&three),
                             uow_fetch_get(&user_entity, &ada, 0, (void **)&u)};
  UNIT_STEP(unit, uow_fetch(unit, items, 2));
  UNIT_STEP(unit, uow_get(unit, &card_entity, &id1, (void **)&one));
  UNIT_DUP(unit, one->title, "one*");
  if (!rc)
    one->score += 1;
  UNIT_STEP(unit, uow_new(unit, &card_entity, (void **)&two));
  if (!rc) {
    two->id = 2;
    two->title = "two";
  }
  UNIT_STEP(unit, uow_delete(unit, three));
  if (!rc)
    u->score += 1;
  UNIT_STEP(unit, uow_emit(unit, "cards.changed", "cards", "x", 1));
  if (!rc) {
    rc = w->commit = uow_commit(unit);
    if (rc)
      TORTURE_SAY("uow_commit", uow_errmsg(unit));
  }
  uow_end(unit);
  uow_env_close(env);
  return rc;
}

static const torture_fact cards_facts[] = {
    {"users", "id = 1001 AND score = 11 AND version = 2", 1, "id = 1001 AND score = 10"},
    {"uow_outbox", "kind = 'intent' AND event_key = 'cards:1'", 2,
     "kind = 'intent' AND event_key = 'cards:1'"},
    {"uow_outbox", "kind = 'intent' AND event_key = 'cards:2'", 1, NULL},
    {"uow_outbox", "kind = 'intent' AND event_key = 'cards:3'", 2,
     "kind = 'intent' AND event_key = 'cards:3'"},
    {"uow_outbox", "kind = 'event' AND topic = 'cards.changed'", 1, NULL},
};

/* A field of a Redis hash as text, "" when missing. */
static void redis_field(const char *key, const char *field, char *buf, size_t cap) {
  redisReply *r = redis_command("HGET %s %s", key, field);
  snprintf(buf, cap, "%.*s", r->type == REDIS_REPLY_STRING ? (int)r->len : 0,
           r->type == REDIS_REPLY_STRING ? r->str : "");
  freeReplyObject(r);
}

/* The cards as Redis holds them: "title/version" each, "-" for none,
 * "deleted/version" for a tombstone. */
static void redis_cards(char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (int id = 1; id <= 3; id++) {
    char key[32], title[32], version[32], deleted[8];
    snprintf(key, sizeof(key), "cards:%d", id);
    redis_field(key, "title", title, sizeof(title));
    redis_field(key, "__version", version, sizeof(version));
    redis_field(key, "__deleted", deleted, sizeof(deleted));
    len += (size_t)snprintf(buf + len, cap - len, "%s%s/%s", id > 1 ? " " : "",
                            deleted[0] ? "deleted"
                            : title[0] ? title
                                       : "-",
                            version);
  }
}

static bool cards_check(void *ctx, int rc, long point) {
  cards_world *w = ctx;
  (void)rc;
  (void)point;
  bool all, none;
  char why[1024];
  torture_read_facts(test_url(), cards_facts, sizeof(cards_facts) / sizeof(cards_facts[0]), &all,
                     &none, why, sizeof(why));
  bool ok = torture_unit_consistent("the unit", w->commit, all, none, why);
  /* Clean passes apply every intent still pending; then Redis holds what committed. */
  uow_sink sink = {UOW_SINK_VERSION, "all", take_all, NULL, NULL};
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 2;
  torture_env_exec(w->env, "DELETE FROM uow_relay_lease", NULL); /* as if a lost lease expired */
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  stats.backlog = -1;
  for (int pass = 0; pass < 200 && stats.backlog != 0; pass++) {
    uint64_t before = stats.delivered;
    EOK(w->env, uow_relay_once(w->env, &sink, &o, &stats));
    if (stats.delivered == before && stats.backlog) {
      struct timespec pause = {0, 1000 * 1000}; /* a retry backs off 1 to 2 ms */
      nanosleep(&pause, NULL);
    }
  }
  if (torture_int(test_url(), "SELECT count(*) FROM uow_outbox WHERE state <> 1")) {
    fprintf(stderr, "intents or events are still pending after clean relay passes\n");
    ok = false;
  }
  char held[256];
  redis_cards(held, sizeof(held));
  bool redis_all = strcmp(held, "one*/2 two/1 deleted/2") == 0;
  bool redis_none = strcmp(held, "one/1 -/ three/1") == 0;
  if (!(all ? redis_all : redis_none)) {
    fprintf(stderr, "Redis holds \"%s\" after a unit whose commit returned %d\n", held, w->commit);
    ok = false;
  }
  return ok;
}

static void redis_objects_through_intents_are_all_or_nothing_at_each_allocation(void **state) {
  (void)state;
  cards_world w = {NULL, TORTURE_NOT_REACHED};
  char name[64];
  snprintf(name, sizeof(name), "redis objects via intents %s", test_store_kind());
  torture_scenario s = {
      name, &w, cards_setup, cards_teardown, cards_prepare, cards_run, cards_check, NULL, 0};
  torture_run(&s);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(relay_with_a_callback_sink_delivers_every_event_after_any_failure),
      cmocka_unit_test(relay_with_a_command_sink_delivers_every_event_after_any_failure),
      cmocka_unit_test(relay_to_a_redis_stream_delivers_every_event_after_any_failure),
      cmocka_unit_test(redis_objects_through_intents_are_all_or_nothing_at_each_allocation),
  };
  return cmocka_run_group_tests_name("alloc_relay", tests, NULL, NULL);
}
