/*
 * test_intents.c - objects in Redis, a store that cannot join a transaction:
 * written as intents committed with the unit, applied after the commit, and
 * by the relay after an outage or a crash, never moving backwards. Runs with
 * SQLite and with PostgreSQL as the unit's SQL store, against the real
 * redis-server of the test harness.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "support.h"

typedef struct unversioned {
  int64_t id;
  char *title;
} unversioned;
static const uow_column unversioned_columns[] = {
    UOW_COLUMN(unversioned, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(unversioned, title, UOW_TEXT, 0),
};
static const uow_entity unversioned_entity =
    UOW_ENTITY(unversioned, "unversioned", unversioned_columns);

/* ---- the oracle: Redis itself ---- */

static const char *redis_socket; /* the server the oracle asks: the suite's, by default */

static redisContext *redis(void) {
  const char *socket = redis_socket ? redis_socket : getenv("UOW_TEST_REDIS_SOCKET");
  assert_non_null(socket);
  redisContext *c = redisConnectUnix(socket);
  if (!c || c->err)
    fail_msg("cannot reach the test redis at %s", socket);
  return c;
}

static void redis_cmd(const char *cmd) {
  redisContext *c = redis();
  redisReply *r = redisCommand(c, cmd);
  assert_non_null(r);
  freeReplyObject(r);
  redisFree(c);
}

/* HGET key field into buf; false when the field or key is missing. */
static bool redis_field(const char *key, const char *field, char *buf, size_t cap) {
  redisContext *c = redis();
  redisReply *r = redisCommand(c, "HGET %s %s", key, field);
  assert_non_null(r);
  bool found = r->type == REDIS_REPLY_STRING;
  if (found)
    snprintf(buf, cap, "%.*s", (int)r->len, r->str);
  freeReplyObject(r);
  redisFree(c);
  return found;
}

static void expect_card(const char *key, const char *title, const char *version) {
  char buf[128];
  assert_true(redis_field(key, "title", buf, sizeof(buf)));
  assert_string_equal(buf, title);
  assert_true(redis_field(key, "__version", buf, sizeof(buf)));
  assert_string_equal(buf, version);
}

/* ---- the world: the suite's SQL store "main" plus Redis "cache" ---- */

static int setup(void **state) {
  redis_cmd("FLUSHDB");
  int rc = test_setup(state);
  if (rc)
    return rc;
  test_world *w = *state;
  const char *url = getenv("UOW_TEST_REDIS_URL");
  if (uow_env_add_store(w->env, "cache", url) || uow_env_map(w->env, &card_entity, "cache"))
    fail_msg("cache: %s", uow_env_errmsg(w->env));
  return UOW_OK;
}

static void save_card(uow_env *env, int64_t id, const char *title, bool commit) {
  uow_unit *unit;
  card *c = NULL;
  EOK(env, uow_begin(env, &unit));
  int rc = uow_get(unit, &card_entity, &id, (void **)&c);
  if (rc == UOW_ENOTFOUND) {
    UOK(unit, uow_new(unit, &card_entity, (void **)&c));
    c->id = id;
  } else {
    UOK(unit, rc);
  }
  c->title = uow_strdup(unit, title);
  c->score = 0.5;
  if (commit)
    UOK(unit, uow_commit(unit));
  else
    UOK(unit, uow_rollback(unit));
  uow_end(unit);
}

/* Make intent rows pending again (those matching `which`, after "kind = 'intent'"). */
static void requeue_intents(uow_env *env, const char *which) {
  char sql[256];
  snprintf(sql, sizeof(sql), "UPDATE uow_outbox SET state = 0 WHERE kind = 'intent'%s", which);
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_exec(unit, "main", sql, NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* A unit that only creates a card: it never reads Redis. */
static void new_card(uow_env *env, int64_t id, const char *title) {
  uow_unit *unit;
  card *c;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_new(unit, &card_entity, (void **)&c));
  c->id = id;
  c->title = uow_strdup(unit, title);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* ---- tests ---- */

/* A sink for events that takes everything (the tests here only care about intents). */
static int take_all(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                    size_t errcap) {
  (void)ctx;
  (void)events;
  (void)err;
  (void)errcap;
  *delivered = n;
  return UOW_OK;
}

static void relay_once(uow_env *env) {
  uow_sink sink = {UOW_SINK_VERSION, "all", take_all, NULL, NULL};
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 1;
  for (int i = 0; i < 10; i++) /* one intent per key per pass */
    EOK(env, uow_relay_once(env, &sink, &o, NULL));
}

static void object_in_redis_is_written_after_commit_and_read_back(void **state) {
  test_world *w = *state;
  save_card(w->env, 7, "first", true);
  expect_card("cards:7", "first", "1");
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 1"), 1);
  save_card(w->env, 7, "second", true); /* read from Redis, changed, version 2 */
  expect_card("cards:7", "second", "2");
  uow_unit *unit;
  card *c;
  int64_t id = 7;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &card_entity, &id, (void **)&c));
  assert_string_equal(c->title, "second");
  assert_int_equal(c->version, 2);
  assert_true(c->score == 0.5);
  uow_end(unit);
}

static void rolled_back_unit_never_touches_redis(void **state) {
  test_world *w = *state;
  save_card(w->env, 8, "never", false);
  char buf[16];
  assert_false(redis_field("cards:8", "title", buf, sizeof(buf)));
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent'"), 0);
}

static void
deleted_object_is_removed_from_redis_and_an_older_intent_cannot_bring_it_back(void **state) {
  test_world *w = *state;
  save_card(w->env, 9, "doomed", true);
  uow_unit *unit;
  card *c;
  int64_t id = 9;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &card_entity, &id, (void **)&c));
  UOK(unit, uow_delete(unit, c));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  EOK(w->env, uow_begin(w->env, &unit));
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &card_entity, &id, (void **)&c));
  uow_end(unit);
  /* The first intent (version 1, a put) applied again changes nothing. */
  requeue_intents(w->env, "");
  relay_once(w->env);
  EOK(w->env, uow_begin(w->env, &unit));
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &card_entity, &id, (void **)&c));
  uow_end(unit);
  char buf[16];
  assert_true(redis_field("cards:9", "__deleted", buf, sizeof(buf)));
}

static void intents_applied_again_and_out_of_order_never_move_a_value_backwards(void **state) {
  test_world *w = *state;
  save_card(w->env, 10, "v1", true);
  save_card(w->env, 10, "v2", true);
  save_card(w->env, 10, "v3", true);
  expect_card("cards:10", "v3", "3");
  /* Every intent again, in order: v1 and v2 are older than what Redis holds. */
  requeue_intents(w->env, "");
  relay_once(w->env);
  expect_card("cards:10", "v3", "3");
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 1"), 3);
  /* From nothing, the same rows rebuild the newest state. */
  redis_cmd("DEL cards:10");
  requeue_intents(w->env, "");
  relay_once(w->env);
  expect_card("cards:10", "v3", "3");
  /* Only the oldest one, after the newest: nothing moves. */
  requeue_intents(w->env, " AND id = (SELECT min(id) FROM uow_outbox WHERE kind = 'intent')");
  relay_once(w->env);
  expect_card("cards:10", "v3", "3");
}

static void units_commit_while_redis_is_away_and_the_relay_applies_them_later(void **state) {
  test_world *w = *state;
  /* A second environment whose Redis socket does not exist yet. */
  char link[100], url[200]; /* a unix socket path must be short */
  snprintf(link, sizeof(link), "/tmp/uow-redis-later-%ld.sock", (long)getpid());
  unlink(link);
  snprintf(url, sizeof(url), "redis+unix://%s", link);
  uow_env *env;
  EOK(w->env, test_env_open_second(NULL, &env));
  EOK(env, uow_env_add_store(env, "cache", url));
  EOK(env, uow_env_map(env, &card_entity, "cache"));
  for (int64_t id = 20; id < 23; id++) /* writes need no Redis; reads would */
    new_card(env, id, "while away");
  char buf[32];
  assert_false(redis_field("cards:20", "title", buf, sizeof(buf)));
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 0"), 3);
  /* The relay cannot either, and keeps them for a retry. */
  uow_sink sink = {UOW_SINK_VERSION, "all", take_all, NULL, NULL};
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(env, uow_relay_once(env, &sink, &o, &stats));
  assert_int_equal(stats.retried, 1);
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 0"), 3);
  /* Redis is back. */
  assert_int_equal(symlink(getenv("UOW_TEST_REDIS_SOCKET"), link), 0);
  o.backoff_ms = 1;
  o.backoff_max_ms = 1;
  for (int i = 0; i < 400 && test_count(w->env, "uow_outbox", "state = 0") > 0; i++) {
    EOK(env, uow_relay_once(env, &sink, &o, NULL));
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  for (int id = 20; id < 23; id++) {
    char key[32];
    snprintf(key, sizeof(key), "cards:%d", id);
    expect_card(key, "while away", "1");
  }
  test_env_close(env);
  unlink(link);
}

/* A Redis server of the test's own, stopped while units commit, then started again. */
static void units_commit_while_redis_is_stopped_and_are_applied_once_it_is_back(void **state) {
  test_world *w = *state;
  char dir[1100], url[1200], socket[1200];
  snprintf(dir, sizeof(dir), "%s/own-redis", test_dir());
  test_server_script("redis", "start", dir, "", NULL, 0);
  test_server_script("redis", "url", dir, "", url, sizeof(url));
  test_server_script("redis", "socket", dir, "", socket, sizeof(socket));
  uow_env *env;
  EOK(w->env, test_env_open_second(NULL, &env));
  EOK(env, uow_env_add_store(env, "cache", url));
  EOK(env, uow_env_map(env, &card_entity, "cache"));
  new_card(env, 40, "before");
  test_server_script("redis", "stop", dir, "", NULL, 0);
  for (int64_t id = 41; id < 44; id++)
    new_card(env, id, "while stopped"); /* the units commit all the same */
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 0"), 3);
  test_server_script("redis", "start", dir, "", NULL, 0);
  uow_sink sink = {UOW_SINK_VERSION, "all", take_all, NULL, NULL};
  uow_relay_options o = UOW_RELAY_OPTIONS_INIT;
  o.backoff_ms = 1;
  o.backoff_max_ms = 1;
  for (int i = 0; i < 100 && test_count(w->env, "uow_outbox", "state = 0") > 0; i++)
    EOK(env, uow_relay_once(env, &sink, &o, NULL));
  assert_int_equal(test_count(w->env, "uow_outbox", "state = 0"), 0);
  redis_socket = socket;
  for (int id = 41; id < 44; id++) {
    char key[32];
    snprintf(key, sizeof(key), "cards:%d", id);
    expect_card(key, "while stopped", "1");
  }
  redis_socket = NULL;
  test_env_close(env);
  test_server_script("redis", "stop", dir, "", NULL, 0);
}

static void killed_between_commit_and_apply_the_relay_applies_it(void **state) {
  test_world *w = *state;
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* A process of its own: connections are never shared across fork. */
    setenv("UOW_CRASH_AT", "before_intents_apply", 1);
    uow_env *env;
    uow_unit *unit;
    card *c;
    if (test_env_open_second(NULL, &env) ||
        uow_env_add_store(env, "cache", getenv("UOW_TEST_REDIS_URL")) ||
        uow_env_map(env, &card_entity, "cache") || uow_begin(env, &unit) ||
        uow_new(unit, &card_entity, (void **)&c))
      _exit(3);
    c->id = 30;
    c->title = "orphan";
    uow_commit(unit);
    _exit(4); /* not reached: the crash point ends the process */
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  char buf[32];
  assert_false(redis_field("cards:30", "title", buf, sizeof(buf)));
  assert_int_equal(test_count(w->env, "uow_outbox", "kind = 'intent' AND state = 0"), 1);
  relay_once(w->env);
  expect_card("cards:30", "orphan", "1");
}

static void redis_entity_without_a_version_column_is_refused(void **state) {
  test_world *w = *state;
  assert_int_equal(uow_env_map(w->env, &unversioned_entity, "cache"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "UOW_VERSION");
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(object_in_redis_is_written_after_commit_and_read_back, setup, test_teardown),
      cmocka_unit_test_setup_teardown(rolled_back_unit_never_touches_redis, setup, test_teardown),
      cmocka_unit_test_setup_teardown(deleted_object_is_removed_from_redis_and_an_older_intent_cannot_bring_it_back, setup, test_teardown),
      cmocka_unit_test_setup_teardown(intents_applied_again_and_out_of_order_never_move_a_value_backwards, setup, test_teardown),
      cmocka_unit_test_setup_teardown(units_commit_while_redis_is_away_and_the_relay_applies_them_later, setup, test_teardown),
      cmocka_unit_test_setup_teardown(units_commit_while_redis_is_stopped_and_are_applied_once_it_is_back, setup, test_teardown),
      cmocka_unit_test_setup_teardown(killed_between_commit_and_apply_the_relay_applies_it, setup, test_teardown),
      cmocka_unit_test_setup_teardown(redis_entity_without_a_version_column_is_refused, setup, test_teardown),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("intents", tests, NULL, NULL);
}
