/*
 * test_redis_store.c - the Redis store (src/stores/redis.c) through its ops
 * table, against the throwaway Redis server (UOW_TEST_REDIS_URL). hiredis on
 * a connection of its own is the oracle: what apply wrote is read back with
 * HGETALL, and state is planted with HSET, SET or SCRIPT FLUSH.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "uow.h"
#include "uow/store.h"

extern const uow_store_ops uow__redis_store;
static const uow_store_ops *const ops = &uow__redis_store;

/* ---- the entity ---- */

typedef struct player {
  int64_t id;
  char *name;
  double score;
  bool active;
  uow_blob data;
  int64_t version;
} player;

static const uow_column player_columns[] = {
    UOW_COLUMN(player, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(player, name, UOW_TEXT, 0),
    UOW_COLUMN(player, score, UOW_DOUBLE, 0),
    UOW_COLUMN(player, active, UOW_BOOL, 0),
    UOW_COLUMN(player, data, UOW_BLOB, UOW_NULLABLE),
    UOW_COLUMN(player, version, UOW_INT64, UOW_VERSION),
};
#define TABLE "uow_rstore_player"
static const uow_entity player_entity = UOW_ENTITY(player, TABLE, player_columns);

/* ---- helpers ---- */

static const char *env_or_fail(const char *name) {
  const char *v = getenv(name);
  if (!v || !v[0])
    fail_msg("%s is not set (run this suite through ctest)", name);
  return v;
}

/* The oracle connection, with every key of this suite deleted. */
static redisContext *oracle(void) {
  redisContext *c = redisConnectUnix(env_or_fail("UOW_TEST_REDIS_SOCKET"));
  assert_non_null(c);
  if (c->err)
    fail_msg("cannot reach the test Redis: %s", c->errstr);
  redisReply *keys = redisCommand(c, "KEYS %s", TABLE ":*");
  assert_non_null(keys);
  for (size_t i = 0; i < keys->elements; i++)
    freeReplyObject(redisCommand(c, "DEL %b", keys->element[i]->str, keys->element[i]->len));
  freeReplyObject(keys);
  return c;
}

static redisReply *run(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  assert_non_null(r);
  if (r->type == REDIS_REPLY_ERROR)
    fail_msg("redis: %s", r->str);
  return r;
}

/* A field of an HGETALL reply, or NULL. */
static const redisReply *field(const redisReply *hash, const char *name) {
  for (size_t i = 0; i + 1 < hash->elements; i += 2)
    if (strcmp(hash->element[i]->str, name) == 0)
      return hash->element[i + 1];
  return NULL;
}

static void assert_field(const redisReply *hash, const char *name, const void *value, size_t len) {
  const redisReply *v = field(hash, name);
  if (!v)
    fail_msg("field %s is missing", name);
  assert_int_equal(v->len, len);
  assert_memory_equal(v->str, value, len);
}

static uow_store_driver *open_store(const char *url) {
  uow_store_driver *drv = NULL;
  uow_status st = {0, ""};
  uow_store_config cfg = {1, "cache"};
  if (ops->open(url, &cfg, &drv, &st))
    fail_msg("open %s: %s", url, st.message);
  return drv;
}

static uow_store_conn *connect_store(uow_store_driver *drv) {
  uow_store_conn *conn = NULL;
  uow_status st = {0, ""};
  if (ops->connect(drv, &conn, &st))
    fail_msg("connect: %s", st.message);
  assert_true(ops->healthy(conn));
  return conn;
}

/* An intent with its field texts, kept together (fields point into it). */
typedef struct put_intent {
  char id[24], score[40], version[24];
  uow_intent_field fields[6];
  uow_intent intent;
} put_intent;

static void make_put(put_intent *p, int64_t id, const char *name, double score, bool active,
                     const void *data, size_t len, int64_t version) {
  memset(p, 0, sizeof(*p));
  snprintf(p->id, sizeof(p->id), "%" PRId64, id);
  snprintf(p->score, sizeof(p->score), "%.17g", score);
  snprintf(p->version, sizeof(p->version), "%" PRId64, version);
  const uow_intent_field fields[6] = {{"id", p->id, strlen(p->id)},
                                      {"name", name, strlen(name)},
                                      {"score", p->score, strlen(p->score)},
                                      {"active", active ? "1" : "0", 1},
                                      {"data", data, len},
                                      {"version", p->version, strlen(p->version)}};
  memcpy(p->fields, fields, sizeof(fields));
  p->intent = (uow_intent){TABLE, p->id, version, false, p->fields, 6};
}

static uow_intent make_del(const char *key, int64_t version) {
  return (uow_intent){TABLE, key, version, true, NULL, 0};
}

static int apply(uow_store_conn *conn, const uow_intent *intents, size_t n, size_t *applied,
                 uow_status *st) {
  *applied = 12345;
  st->code = 0;
  st->message[0] = '\0';
  return ops->apply(conn, intents, n, applied, st);
}

static void apply_ok(uow_store_conn *conn, const uow_intent *intents, size_t n) {
  size_t applied;
  uow_status st;
  if (apply(conn, intents, n, &applied, &st))
    fail_msg("apply: %s", st.message);
  assert_int_equal(applied, n);
}

/* What a read saw: the number of rows and a copy of the last one. */
typedef struct seen {
  int rows;
  uow_value row[6];
  char name[64];
  unsigned char data[64];
} seen;

static int remember(void *ctx, const uow_value *row) {
  seen *s = ctx;
  s->rows++;
  memcpy(s->row, row, sizeof(s->row));
  if (!row[1].is_null)
    snprintf(s->name, sizeof(s->name), "%.*s", (int)row[1].v.bytes.size,
             (const char *)row[1].v.bytes.data);
  if (!row[4].is_null && row[4].v.bytes.size <= sizeof(s->data))
    memcpy(s->data, row[4].v.bytes.data, row[4].v.bytes.size);
  return 0;
}

static int read_key(uow_store_conn *conn, int64_t id, seen *s, uow_status *st) {
  memset(s, 0, sizeof(*s));
  uow_value key = uow_int64(id);
  return ops->read(conn, &player_entity, NULL, &key, 1, 0, remember, s, st);
}

/* ---- tests ---- */

static void store_declares_intents_only(void **state) {
  (void)state;
  assert_int_equal(ops->abi, UOW_STORE_ABI);
  assert_string_equal(ops->scheme, "redis");
  assert_string_equal(ops->alias, "redis+unix");
  assert_int_equal(ops->caps, UOW_STORE_INTENTS);
  assert_non_null(ops->apply);
  assert_null(ops->begin);
  assert_null(ops->exec);
  assert_null(ops->prepare);
}

static void apply_put_writes_every_field_with_its_version(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent a, b;
  make_put(&a, 1, "Ann", 2.5, true, "\0\xff\x01", 3, 1);
  make_put(&b, 2, "", -0.1, false, NULL, 0, 7); /* empty text, NULL blob */
  uow_intent both[2] = {a.intent, b.intent};
  apply_ok(conn, both, 2);

  redisReply *h = run(c, "HGETALL %s", TABLE ":1");
  assert_int_equal(h->elements, 2 * 7);
  assert_field(h, "__version", "1", 1);
  assert_field(h, "id", "1", 1);
  assert_field(h, "name", "Ann", 3);
  assert_field(h, "score", "2.5", 3);
  assert_field(h, "active", "1", 1);
  assert_field(h, "data", "\0\xff\x01", 3);
  assert_field(h, "version", "1", 1);
  freeReplyObject(h);
  h = run(c, "HGETALL %s", TABLE ":2");
  assert_int_equal(h->elements, 2 * 6);
  assert_field(h, "__version", "7", 1);
  assert_field(h, "name", "", 0);
  assert_null(field(h, "data"));
  assert_null(field(h, "__deleted"));
  freeReplyObject(h);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void read_returns_the_fields_converted_by_column_type(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent a, b;
  make_put(&a, 9000000000000000001, "Zoë", 0.1, true, "\0bin", 4, 3);
  make_put(&b, 2, "Bo", -1e300, false, NULL, 0, 1);
  uow_intent both[2] = {a.intent, b.intent};
  apply_ok(conn, both, 2);

  seen s;
  uow_status st = {0, ""};
  assert_int_equal(read_key(conn, 9000000000000000001, &s, &st), 0);
  assert_int_equal(s.rows, 1);
  assert_int_equal(s.row[0].type, UOW_INT64);
  assert_false(s.row[0].is_null);
  assert_true(s.row[0].v.i == 9000000000000000001);
  assert_int_equal(s.row[1].type, UOW_TEXT);
  assert_string_equal(s.name, "Zoë");
  assert_int_equal(s.row[2].type, UOW_DOUBLE);
  assert_true(s.row[2].v.d == 0.1); /* %.17g round-trips exactly */
  assert_int_equal(s.row[3].type, UOW_BOOL);
  assert_true(s.row[3].v.b);
  assert_int_equal(s.row[4].type, UOW_BLOB);
  assert_false(s.row[4].is_null);
  assert_int_equal(s.row[4].v.bytes.size, 4);
  assert_memory_equal(s.data, "\0bin", 4);
  assert_int_equal(s.row[5].v.i, 3);

  assert_int_equal(read_key(conn, 2, &s, &st), 0);
  assert_int_equal(s.rows, 1);
  assert_true(s.row[2].v.d == -1e300);
  assert_false(s.row[3].v.b);
  assert_true(s.row[4].is_null); /* a missing field is NULL */
  assert_int_equal(s.row[4].type, UOW_BLOB);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void read_of_a_field_that_does_not_parse_is_eio_naming_key_and_field(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  const char *bad[][2] = {
      {"score", "12abc"}, {"id", "99999999999999999999"}, {"active", "2"}, {"version", ""}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    freeReplyObject(run(c, "DEL %s", TABLE ":5"));
    freeReplyObject(
        run(c, "HSET %s __version 1 id 5 name x score 1 active 0 version 1", TABLE ":5"));
    freeReplyObject(run(c, "HSET %s %s %s", TABLE ":5", bad[i][0], bad[i][1]));
    seen s;
    uow_status st = {0, ""};
    assert_int_equal(read_key(conn, 5, &s, &st), UOW_EIO);
    assert_int_equal(s.rows, 0);
    assert_non_null(strstr(st.message, TABLE ":5"));
    assert_non_null(strstr(st.message, bad[i][0]));
  }
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void older_intent_never_overwrites_a_newer_one(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent v3, v2, v10;
  make_put(&v3, 1, "third", 3, true, NULL, 0, 3);
  make_put(&v2, 1, "second", 2, true, NULL, 0, 2);
  make_put(&v10, 1, "tenth", 10, true, NULL, 0, 10);
  apply_ok(conn, &v3.intent, 1);
  apply_ok(conn, &v2.intent, 1); /* skipped as older: still counts as applied */
  redisReply *h = run(c, "HGETALL %s", TABLE ":1");
  assert_field(h, "__version", "3", 1);
  assert_field(h, "name", "third", 5);
  freeReplyObject(h);
  /* 10 > 3 although "10" < "3" as text */
  apply_ok(conn, &v10.intent, 1);
  apply_ok(conn, &v3.intent, 1);
  h = run(c, "HGETALL %s", TABLE ":1");
  assert_field(h, "__version", "10", 2);
  assert_field(h, "name", "tenth", 5);
  freeReplyObject(h);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void reapplying_an_intent_changes_nothing(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent p;
  make_put(&p, 4, "once", 1, false, "x", 1, 2);
  apply_ok(conn, &p.intent, 1);
  /* A marker that a second write (DEL + HSET) would remove. */
  freeReplyObject(run(c, "HSET %s marker here", TABLE ":4"));
  apply_ok(conn, &p.intent, 1);
  uow_intent del = make_del("4", 2); /* a delete at the same version is not newer either */
  apply_ok(conn, &del, 1);
  redisReply *h = run(c, "HGETALL %s", TABLE ":4");
  assert_field(h, "marker", "here", 4);
  assert_field(h, "name", "once", 4);
  assert_null(field(h, "__deleted"));
  freeReplyObject(h);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void delete_leaves_a_tombstone_that_an_older_put_cannot_resurrect(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent v1, v3;
  make_put(&v1, 6, "alive", 1, true, NULL, 0, 1);
  make_put(&v3, 6, "again", 3, true, NULL, 0, 3);
  uow_intent del = make_del("6", 2);
  apply_ok(conn, &v1.intent, 1);
  apply_ok(conn, &del, 1);
  redisReply *h = run(c, "HGETALL %s", TABLE ":6");
  assert_int_equal(h->elements, 4); /* nothing but the tombstone */
  assert_field(h, "__version", "2", 1);
  assert_field(h, "__deleted", "1", 1);
  freeReplyObject(h);

  apply_ok(conn, &v1.intent, 1); /* late: must not bring it back */
  seen s;
  uow_status st = {0, ""};
  assert_int_equal(read_key(conn, 6, &s, &st), 0);
  assert_int_equal(s.rows, 0);

  apply_ok(conn, &v3.intent, 1); /* newer than the delete: a new object */
  assert_int_equal(read_key(conn, 6, &s, &st), 0);
  assert_int_equal(s.rows, 1);
  assert_string_equal(s.name, "again");
  h = run(c, "HGETALL %s", TABLE ":6");
  assert_null(field(h, "__deleted"));
  freeReplyObject(h);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void read_of_a_missing_or_deleted_key_gives_no_row(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  seen s;
  uow_status st = {0, ""};
  assert_int_equal(read_key(conn, 404, &s, &st), 0);
  assert_int_equal(s.rows, 0);
  uow_intent del = make_del("405", 1); /* deleted without ever being put */
  apply_ok(conn, &del, 1);
  assert_int_equal(read_key(conn, 405, &s, &st), 0);
  assert_int_equal(s.rows, 0);
  /* a tombstone planted by hand, with other fields beside it */
  freeReplyObject(run(c, "HSET %s __version 4 __deleted 1 name ghost", TABLE ":406"));
  assert_int_equal(read_key(conn, 406, &s, &st), 0);
  assert_int_equal(s.rows, 0);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void read_with_a_where_clause_is_refused(void **state) {
  (void)state;
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  seen s = {0};
  uow_status st = {0, ""};
  uow_value name = uow_text("Ann");
  assert_int_equal(ops->read(conn, &player_entity, "name = ?", &name, 1, 0, remember, &s, &st),
                   UOW_EINVAL);
  assert_non_null(strstr(st.message, "reads by primary key only"));
  st.message[0] = '\0';
  assert_int_equal(ops->read(conn, &player_entity, NULL, NULL, 0, 0, remember, &s, &st),
                   UOW_EINVAL); /* every row */
  assert_non_null(strstr(st.message, "reads by primary key only"));
  assert_int_equal(s.rows, 0);
  ops->disconnect(conn);
  ops->close(drv);
}

static void write_is_refused_as_misuse(void **state) {
  (void)state;
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  uow_write w = {0};
  w.kind = UOW_WRITE_DELETE;
  w.entity = &player_entity;
  w.key = uow_int64(1);
  uow_status st = {0, ""};
  assert_int_equal(ops->write(conn, &w, 1, true, &st), UOW_EMISUSE);
  assert_non_null(strstr(st.message, "intents"));
  assert_int_equal(ops->create_table(conn, &player_entity, &st), 0);
  ops->disconnect(conn);
  ops->close(drv);
}

static void apply_is_pipelined_for_many_intents(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  enum { N = 1000 };
  put_intent *puts = calloc(N, sizeof(*puts));
  uow_intent *batch = calloc(N, sizeof(*batch));
  assert_non_null(puts);
  assert_non_null(batch);
  for (int i = 0; i < N; i++) {
    make_put(&puts[i], 10000 + i, "many", i, i % 2, NULL, 0, 1 + i % 3);
    batch[i] = puts[i].intent;
  }
  apply_ok(conn, batch, 1); /* loads the script */
  uint64_t before = ops->round_trips(conn);
  apply_ok(conn, batch, N);
  assert_int_equal(ops->round_trips(conn) - before, 1);
  redisReply *keys = run(c, "KEYS %s", TABLE ":1????");
  assert_int_equal(keys->elements, N);
  freeReplyObject(keys);
  redisReply *v = run(c, "HGET %s version", TABLE ":10999");
  assert_string_equal(v->str, "1"); /* 1 + 999 % 3 */
  freeReplyObject(v);
  free(batch);
  free(puts);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void apply_stops_counting_at_a_refused_intent(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  freeReplyObject(run(c, "SET %s not-a-hash", TABLE ":2"));
  put_intent p[3];
  uow_intent batch[3];
  for (int i = 0; i < 3; i++) {
    make_put(&p[i], i + 1, "n", 0, false, NULL, 0, 1);
    batch[i] = p[i].intent;
  }
  size_t applied;
  uow_status st;
  assert_int_equal(apply(conn, batch, 3, &applied, &st), UOW_EIO);
  assert_int_equal(applied, 1);
  assert_non_null(strstr(st.message, TABLE ":2"));
  assert_non_null(strstr(st.message, "WRONGTYPE"));
  /* the replies were all read: the connection is still in step */
  assert_true(ops->healthy(conn));
  uow_intent bad = batch[0];
  bad.version = -1;
  assert_int_equal(apply(conn, &bad, 1, &applied, &st), UOW_EINVAL);
  assert_int_equal(applied, 0);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void open_does_not_need_redis_to_be_up_but_connect_reports_eio(void **state) {
  (void)state;
  const char *url = "redis+unix:///nonexistent-uow-dir/redis.sock";
  uow_store_driver *drv = open_store(url);
  uow_store_conn *conn = NULL;
  uow_status st = {0, ""};
  assert_int_equal(ops->connect(drv, &conn, &st), UOW_EIO);
  assert_null(conn);
  assert_int_equal(st.code, UOW_EIO);
  assert_non_null(strstr(st.message, "/nonexistent-uow-dir/redis.sock"));
  ops->close(drv);
  /* a bad URL is refused at open */
  uow_store_config cfg = {1, "cache"};
  assert_int_equal(ops->open("redis://host:0/", &cfg, &drv, &st), UOW_EINVAL);
  assert_null(drv);
  assert_int_equal(ops->open("redis+unix://?db=1", &cfg, &drv, &st), UOW_EINVAL);
  /* a socket path too long for sockaddr_un: the message says so */
  char url_long[300];
  snprintf(url_long, sizeof(url_long), "redis+unix:///tmp/%0200d.sock", 0);
  assert_int_equal(ops->open(url_long, &cfg, &drv, &st), UOW_EINVAL);
  assert_non_null(strstr(st.message, "socket path has 210 bytes"));
}

static void connect_selects_the_database_in_the_url(void **state) {
  (void)state;
  redisContext *c = oracle();
  char url[512];
  snprintf(url, sizeof(url), "%s?db=3", env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_driver *drv = open_store(url);
  uow_store_conn *conn = connect_store(drv);
  put_intent p;
  make_put(&p, 3, "three", 3, true, NULL, 0, 1);
  apply_ok(conn, &p.intent, 1);
  redisReply *r = run(c, "EXISTS %s", TABLE ":3");
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
  freeReplyObject(run(c, "SELECT 3"));
  r = run(c, "EXISTS %s", TABLE ":3");
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  freeReplyObject(run(c, "DEL %s", TABLE ":3"));
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void script_is_reloaded_after_script_flush(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent a, b, older;
  make_put(&a, 1, "before", 1, true, NULL, 0, 1);
  make_put(&b, 2, "after", 2, true, NULL, 0, 1);
  make_put(&older, 1, "older", 0, true, NULL, 0, 1);
  apply_ok(conn, &a.intent, 1);
  freeReplyObject(run(c, "SCRIPT FLUSH"));
  uow_intent both[2] = {b.intent, older.intent};
  apply_ok(conn, both, 2);
  redisReply *h = run(c, "HGET %s name", TABLE ":2");
  assert_string_equal(h->str, "after");
  freeReplyObject(h);
  h = run(c, "HGET %s name", TABLE ":1"); /* the guard still holds after the reload */
  assert_string_equal(h->str, "before");
  freeReplyObject(h);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

static void healthy_is_false_after_the_server_closes_the_connection(void **state) {
  (void)state;
  redisContext *c = oracle();
  uow_store_driver *drv = open_store(env_or_fail("UOW_TEST_REDIS_URL"));
  uow_store_conn *conn = connect_store(drv);
  put_intent p;
  make_put(&p, 1, "x", 1, true, NULL, 0, 1);
  apply_ok(conn, &p.intent, 1); /* the server has surely accepted the connection now */
  redisReply *killed = run(c, "CLIENT KILL SKIPME yes TYPE normal");
  assert_true(killed->integer >= 1);
  freeReplyObject(killed);
  bool healthy = true;
  for (int i = 0; i < 200 && healthy; i++) {
    healthy = ops->healthy(conn);
    if (healthy)
      nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  assert_false(healthy);
  size_t applied;
  uow_status st;
  assert_int_equal(apply(conn, &p.intent, 1, &applied, &st), UOW_EIO);
  assert_int_equal(applied, 0);
  ops->disconnect(conn);
  conn = connect_store(drv); /* a new connection works */
  apply_ok(conn, &p.intent, 1);
  ops->disconnect(conn);
  ops->close(drv);
  redisFree(c);
}

/* Connect with `url` and expect a failure whose message hides `secret` and shows `expect`. */
static void check_connect_hides(const char *url, const char *secret, const char *expect) {
  uow_store_driver *drv = open_store(url);
  uow_store_conn *conn = NULL;
  uow_status st = {0, ""};
  assert_int_equal(ops->connect(drv, &conn, &st), UOW_EIO);
  if (strstr(st.message, secret) || !strstr(st.message, expect))
    fail_msg("message for %s: %s", expect, st.message);
  ops->close(drv);
}

static void password_never_appears_in_messages(void **state) {
  (void)state;
  const char *sock = env_or_fail("UOW_TEST_REDIS_SOCKET");
  char url[512];
  /* unreachable */
  check_connect_hides("redis://:Sup3rSecretPw@127.0.0.1:1/0", "Sup3rSecretPw", ":***@");
  check_connect_hides("redis+unix://admin:Sup3rSecretPw@/nonexistent-uow-dir/redis.sock",
                      "Sup3rSecretPw", "admin:***@");
  /* reachable, AUTH refused (the default user has no password) */
  snprintf(url, sizeof(url), "redis+unix://:Sup3rSecretPw@%s", sock);
  check_connect_hides(url, "Sup3rSecretPw", "AUTH");
  /* a password that Redis's own refusal happens to contain */
  snprintf(url, sizeof(url), "redis+unix://:default@%s", sock);
  check_connect_hides(url, "default", "AUTH");
  /* a bad URL is not quoted */
  uow_store_driver *drv = NULL;
  uow_status st = {0, ""};
  uow_store_config cfg = {1, "cache"};
  assert_int_equal(ops->open("redis://:Sup3rSecretPw@host:99999/", &cfg, &drv, &st), UOW_EINVAL);
  assert_null(strstr(st.message, "Sup3rSecretPw"));

  /* a real ACL user: the right password works, a wrong one is refused quietly */
  redisContext *c = oracle();
  freeReplyObject(run(c, "ACL SETUSER uow_rstore_tester reset on >Sup3r:Secret@Pw ~* &* +@all"));
  snprintf(url, sizeof(url), "redis+unix://uow_rstore_tester:Sup3r%%3ASecret%%40Pw@%s", sock);
  drv = open_store(url);
  uow_store_conn *conn = connect_store(drv);
  put_intent p;
  make_put(&p, 1, "x", 1, true, NULL, 0, 1);
  apply_ok(conn, &p.intent, 1);
  ops->disconnect(conn);
  ops->close(drv);
  snprintf(url, sizeof(url), "redis+unix://uow_rstore_tester:Wr0ngSecretPw@%s", sock);
  check_connect_hides(url, "Wr0ngSecretPw", "uow_rstore_tester:***@");
  freeReplyObject(run(c, "ACL DELUSER uow_rstore_tester"));
  redisFree(c);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(store_declares_intents_only),
      cmocka_unit_test(apply_put_writes_every_field_with_its_version),
      cmocka_unit_test(read_returns_the_fields_converted_by_column_type),
      cmocka_unit_test(read_of_a_field_that_does_not_parse_is_eio_naming_key_and_field),
      cmocka_unit_test(older_intent_never_overwrites_a_newer_one),
      cmocka_unit_test(reapplying_an_intent_changes_nothing),
      cmocka_unit_test(delete_leaves_a_tombstone_that_an_older_put_cannot_resurrect),
      cmocka_unit_test(read_of_a_missing_or_deleted_key_gives_no_row),
      cmocka_unit_test(read_with_a_where_clause_is_refused),
      cmocka_unit_test(write_is_refused_as_misuse),
      cmocka_unit_test(apply_is_pipelined_for_many_intents),
      cmocka_unit_test(apply_stops_counting_at_a_refused_intent),
      cmocka_unit_test(open_does_not_need_redis_to_be_up_but_connect_reports_eio),
      cmocka_unit_test(connect_selects_the_database_in_the_url),
      cmocka_unit_test(script_is_reloaded_after_script_flush),
      cmocka_unit_test(healthy_is_false_after_the_server_closes_the_connection),
      cmocka_unit_test(password_never_appears_in_messages),
  };
  return cmocka_run_group_tests_name("redis_store", tests, NULL, NULL);
}
