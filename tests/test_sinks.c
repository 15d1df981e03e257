/*
 * test_sinks.c - the built-in outbox sinks against the real thing. The Redis
 * stream sink writes to the throwaway Redis server (UOW_TEST_REDIS_URL) and
 * is checked with hiredis and XRANGE; the command sink runs real commands
 * through /bin/sh that write files, which are read back (and, where python3
 * is there, decoded by Python's json and base64 as an independent oracle).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>

#include "sinks/redis_url.h"
#include "uow.h"

/* ---- helpers ---- */

static const char *env_or_fail(const char *name) {
  const char *v = getenv(name);
  if (!v || !v[0])
    fail_msg("%s is not set (run this suite through ctest)", name);
  return v;
}

static redisContext *oracle(void) {
  redisContext *c = redisConnectUnix(env_or_fail("UOW_TEST_REDIS_SOCKET"));
  assert_non_null(c);
  if (c->err)
    fail_msg("cannot reach the test Redis: %s", c->errstr);
  return c;
}

/* Run a command on the oracle connection and return its reply (never an error). */
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

static void run_and_free(redisContext *c, const char *fmt, const char *arg) {
  freeReplyObject(run(c, fmt, arg));
}

static uow_delivery event(const char *event_id, const char *topic, const char *key,
                          const void *payload, size_t payload_len) {
  uow_delivery ev = {0};
  ev.event_id = event_id;
  ev.store = "main";
  ev.id = 7;
  ev.unit_id = "0b6d2f1e-unit";
  ev.seq = 1;
  ev.topic = topic;
  ev.key = key;
  ev.payload = payload;
  ev.payload_len = payload_len;
  ev.created_at = 1700000000000;
  ev.attempt = 1;
  return ev;
}

static int deliver(uow_sink *sink, const uow_delivery *events, size_t n, size_t *delivered,
                   char *err, size_t errcap) {
  err[0] = '\0';
  *delivered = 12345;
  return sink->deliver(sink->ctx, events, n, delivered, err, errcap);
}

/* The value of `field` in a stream entry's field list, or NULL when it is absent. */
static redisReply *field(redisReply *fields, const char *name) {
  for (size_t i = 0; i + 1 < fields->elements; i += 2)
    if (strcmp(fields->element[i]->str, name) == 0)
      return fields->element[i + 1];
  return NULL;
}

static void assert_field(redisReply *fields, const char *name, const void *value, size_t len) {
  redisReply *v = field(fields, name);
  if (!v)
    fail_msg("field %s missing", name);
  assert_int_equal(v->type, REDIS_REPLY_STRING);
  assert_int_equal(v->len, len);
  assert_memory_equal(v->str, value, len);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    fail_msg("cannot open %s", path);
  char *data = NULL;
  size_t cap = 0, used = 0;
  for (;;) {
    if (used + 4096 + 1 > cap) {
      cap = (cap + 4096) * 2;
      data = realloc(data, cap);
      assert_non_null(data);
    }
    size_t got = fread(data + used, 1, 4096, f);
    used += got;
    if (got == 0)
      break;
  }
  fclose(f);
  data[used] = '\0';
  if (len)
    *len = used;
  return data;
}

static bool python3_available(void) {
  return system("python3 -c 'import json, base64' >/dev/null 2>&1") == 0;
}

/* ---- Redis stream sink ---- */

static void redis_stream_sink_appends_every_event_with_its_event_id(void **state) {
  (void)state;
  redisContext *c = oracle();
  const char *stream = "uow:test:appends";
  run_and_free(c, "DEL %s", stream);

  static const char binary[] = {'\0', 'a', '\x01', '\xff', '\0', 'z'};
  uow_delivery batch[3] = {
      event("main:1", "user.registered", "42", "{\"name\":\"Ann\"}", 14),
      event("main:2", "user.blob", NULL, binary, sizeof(binary)),
      event("main:3", "user.empty", "", NULL, 0),
  };
  batch[1].unit_id = "second-unit";
  batch[1].created_at = 1700000000123;

  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(env_or_fail("UOW_TEST_REDIS_URL"), stream, &sink), 0);
  assert_int_equal(sink.version, UOW_SINK_VERSION);
  assert_string_equal(sink.name, "redis-stream");
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, batch, 3, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 3);
  /* the same connection again, and an empty batch that does nothing */
  uow_delivery more = event("main:4", "user.more", "k", "x", 1);
  assert_int_equal(deliver(&sink, &more, 1, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 1);
  assert_int_equal(deliver(&sink, NULL, 0, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 0);
  uow_sink_close(&sink);

  redisReply *r = run(c, "XRANGE %s - +", stream);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 4);
  const uow_delivery *all[4] = {&batch[0], &batch[1], &batch[2], &more};
  for (size_t i = 0; i < 4; i++) {
    redisReply *fields = r->element[i]->element[1];
    const uow_delivery *ev = all[i];
    char created[32];
    snprintf(created, sizeof(created), "%lld", (long long)ev->created_at);
    /* exactly these fields, in this order; key only when there is one */
    const char *names[] = {"event_id", "topic", "key", "payload", "unit_id", "created_at"};
    size_t expected_elements = ev->key ? 12 : 10;
    assert_int_equal(fields->elements, expected_elements);
    for (size_t f = 0, at = 0; f < 6; f++) {
      if (!ev->key && strcmp(names[f], "key") == 0)
        continue;
      assert_string_equal(fields->element[at]->str, names[f]);
      at += 2;
    }
    assert_field(fields, "event_id", ev->event_id, strlen(ev->event_id));
    assert_field(fields, "topic", ev->topic, strlen(ev->topic));
    if (ev->key)
      assert_field(fields, "key", ev->key, strlen(ev->key));
    else
      assert_null(field(fields, "key"));
    assert_field(fields, "payload", ev->payload_len ? ev->payload : "", ev->payload_len);
    assert_field(fields, "unit_id", ev->unit_id, strlen(ev->unit_id));
    assert_field(fields, "created_at", created, strlen(created));
  }
  freeReplyObject(r);
  run_and_free(c, "DEL %s", stream);
  redisFree(c);
}

static void redis_stream_sink_selects_the_database_in_the_url(void **state) {
  (void)state;
  redisContext *c = oracle();
  const char *stream = "uow:test:db";
  char url[256];
  snprintf(url, sizeof(url), "%s?db=5", env_or_fail("UOW_TEST_REDIS_URL"));
  freeReplyObject(run(c, "SELECT 5"));
  run_and_free(c, "DEL %s", stream);
  freeReplyObject(run(c, "SELECT 0"));
  run_and_free(c, "DEL %s", stream);

  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(url, stream, &sink), 0);
  uow_delivery ev = event("main:9", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);
  uow_sink_close(&sink);

  redisReply *r = run(c, "XLEN %s", stream);
  assert_int_equal(r->integer, 0); /* not in db 0 */
  freeReplyObject(r);
  freeReplyObject(run(c, "SELECT 5"));
  r = run(c, "XLEN %s", stream);
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  run_and_free(c, "DEL %s", stream);
  redisFree(c);
}

static void redis_stream_sink_reports_eio_when_redis_is_unreachable_and_recovers(void **state) {
  (void)state;
  redisContext *c = oracle();
  const char *stream = "uow:test:recovers";
  run_and_free(c, "DEL %s", stream);

  /* The sink's socket path is a symlink that does not exist yet: Redis is
   * "down" for it. Creating the link brings it "back" without touching the
   * shared server. /tmp keeps the path short enough for a unix socket. */
  char dir[] = "/tmp/uow-sinks-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char link_path[128], url[160];
  snprintf(link_path, sizeof(link_path), "%s/redis.sock", dir);
  snprintf(url, sizeof(url), "redis+unix://%s", link_path);

  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(url, stream, &sink), 0); /* does not connect */
  uow_delivery batch[2] = {event("main:1", "t", "a", "one", 3),
                           event("main:2", "t", "b", "two", 3)};
  char err[512];
  size_t delivered;
  for (int attempt = 0; attempt < 2; attempt++) {
    assert_int_equal(deliver(&sink, batch, 2, &delivered, err, sizeof(err)), UOW_EIO);
    assert_int_equal(delivered, 0);
    assert_non_null(strstr(err, link_path));
    assert_non_null(strstr(err, "cannot connect"));
  }

  assert_int_equal(symlink(env_or_fail("UOW_TEST_REDIS_SOCKET"), link_path), 0);
  assert_int_equal(deliver(&sink, batch, 2, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 2);
  uow_sink_close(&sink);
  unlink(link_path);
  rmdir(dir);

  redisReply *r = run(c, "XLEN %s", stream);
  assert_int_equal(r->integer, 2);
  freeReplyObject(r);
  run_and_free(c, "DEL %s", stream);
  redisFree(c);
}

static void redis_stream_sink_reconnects_after_the_server_drops_its_connection(void **state) {
  (void)state;
  redisContext *c = oracle();
  const char *stream = "uow:test:reconnects";
  run_and_free(c, "DEL %s", stream);
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(env_or_fail("UOW_TEST_REDIS_URL"), stream, &sink), 0);
  uow_delivery ev = event("main:1", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);

  /* The server closes the sink's connection; writing to it must neither
   * kill this process with SIGPIPE nor count anything as delivered. */
  freeReplyObject(run(c, "CLIENT KILL TYPE normal SKIPME yes"));
  ev.event_id = "main:2";
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_true(err[0] != '\0');
  sigset_t mask, pending;
  assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
  assert_false(sigismember(&mask, SIGPIPE)); /* the thread's mask is as it was */
  assert_int_equal(sigpending(&pending), 0);
  assert_false(sigismember(&pending, SIGPIPE));

  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 1);
  uow_sink_close(&sink);
  redisReply *r = run(c, "XLEN %s", stream);
  assert_int_equal(r->integer, 2);
  freeReplyObject(r);
  run_and_free(c, "DEL %s", stream);
  redisFree(c);
}

static void redis_stream_sink_counts_the_events_before_a_refused_xadd(void **state) {
  (void)state;
  redisContext *c = oracle();
  const char *stream = "uow:test:refused";
  run_and_free(c, "DEL %s", stream);
  /* An ID at the top of the range makes every later XADD * fail. */
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(env_or_fail("UOW_TEST_REDIS_URL"), stream, &sink), 0);
  uow_delivery ev = event("main:1", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);
  freeReplyObject(run(c, "XADD %s 18446744073709551615-18446744073709551615 f v", stream));
  uow_delivery batch[2] = {event("main:2", "t", "k", "p", 1), event("main:3", "t", "k", "p", 1)};
  assert_int_equal(deliver(&sink, batch, 2, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "main:2"));
  /* the connection stays in step: a good batch afterwards works */
  run_and_free(c, "DEL %s", stream);
  assert_int_equal(deliver(&sink, batch, 2, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 2);
  uow_sink_close(&sink);
  run_and_free(c, "DEL %s", stream);
  redisFree(c);
}

static void redis_stream_sink_rejects_bad_urls(void **state) {
  (void)state;
  char long_path[300];
  memset(long_path, 'a', sizeof(long_path));
  memcpy(long_path, "redis+unix:///", 14);
  long_path[sizeof(long_path) - 1] = '\0';
  const char *bad[] = {
      "",
      "redis:/host",
      "http://host",
      "rediss://host:6379",
      "redis://host:0",
      "redis://host:65536",
      "redis://host:",
      "redis://host:63x9",
      "redis://host:+6379",
      "redis://host/abc",
      "redis://host/1/2",
      "redis://host/-1",
      "redis://host/99999999999",
      "redis://host?db=1",
      "redis://host#x",
      "redis://user@host",
      "redis://:@host",
      "redis://user:@host",
      "redis://ho st",
      "redis://[::1",
      "redis://[]:6379",
      "redis://[::1]x",
      "redis://[::g]",
      "redis://%zz:pw@host",
      "redis://:pw%0@host",
      "redis://:pw%00@host",
      "redis+unix://",
      "redis+unix://relative/path",
      "redis+unix://host/tmp/s",
      "redis+unix:///",
      "redis+unix:///tmp/s?",
      "redis+unix:///tmp/s?db=",
      "redis+unix:///tmp/s?db=x",
      "redis+unix:///tmp/s?foo=1",
      "redis+unix:///tmp/s?db=1&db=2",
      "redis+unix:///tmp/s#frag",
      "redis+unix:///tmp/%00",
      "redis+unix://pw@/tmp/s",
      long_path,
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uow_sink sink;
    memset(&sink, 0x5a, sizeof(sink));
    int rc = uow_sink_redis_stream(bad[i], "s", &sink);
    if (rc != UOW_EINVAL)
      fail_msg("%s: got %d, want UOW_EINVAL", bad[i], rc);
    assert_null(sink.deliver); /* cleared, so closing it is harmless */
    uow_sink_close(&sink);
  }
  const char *good[] = {
      "redis://",
      "redis://localhost",
      "redis://127.0.0.1:6380/2",
      "redis://host:6379/",
      "redis://:pw@host:1/",
      "redis://user:p%40ss@host",
      "redis://user:p@ss@host",
      "redis://[::1]:6379/0",
      "redis://[::1]",
      "redis+unix:///tmp/redis.sock",
      "redis+unix:///tmp/redis.sock?db=15",
      "redis+unix://:pw@/tmp/s",
      "redis+unix://u:pw@/tmp/my%20dir/s",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    uow_sink sink;
    int rc = uow_sink_redis_stream(good[i], "s", &sink);
    if (rc != 0)
      fail_msg("%s: got %d, want 0", good[i], rc);
    uow_sink_close(&sink);
    assert_null(sink.ctx);
  }
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(NULL, "s", &sink), UOW_EINVAL);
  assert_int_equal(uow_sink_redis_stream("redis://", NULL, &sink), UOW_EINVAL);
  assert_int_equal(uow_sink_redis_stream("redis://", "", &sink), UOW_EINVAL);
  assert_int_equal(uow_sink_redis_stream("redis://", "s", NULL), UOW_EINVAL);
}

/* The parser itself (internal): what each accepted form means. */
static void redis_url_parses_host_port_db_and_credentials(void **state) {
  (void)state;
  static const struct {
    const char *text;
    bool unix_socket;
    const char *host, *path, *user, *password;
    int port, db;
    const char *label;
  } cases[] = {
      {"redis://", false, "127.0.0.1", NULL, NULL, NULL, 6379, 0, "redis://127.0.0.1:6379/0"},
      {"redis://cache.example:6380/2", false, "cache.example", NULL, NULL, NULL, 6380, 2,
       "redis://cache.example:6380/2"},
      {"redis://:s%3Acret@h/", false, "h", NULL, NULL, "s:cret", 6379, 0, "redis://:***@h:6379/0"},
      {"redis://ann:p@ss@[::1]:7000/15", false, "::1", NULL, "ann", "p@ss", 7000, 15,
       "redis://ann:***@[::1]:7000/15"},
      {"redis+unix:///run/redis.sock", true, NULL, "/run/redis.sock", NULL, NULL, 0, 0,
       "redis+unix:///run/redis.sock"},
      {"redis+unix://u%40x:pw@/tmp/my%20dir/r.sock?db=3", true, NULL, "/tmp/my dir/r.sock", "u@x",
       "pw", 0, 3, "redis+unix://u@x:***@/tmp/my dir/r.sock?db=3"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uow_redis_url url;
    assert_int_equal(uow__redis_url_parse(cases[i].text, &url), 0);
    assert_int_equal(url.unix_socket, cases[i].unix_socket);
#define CHECK_TEXT(member)                                                                         \
  do {                                                                                             \
    if (cases[i].member)                                                                           \
      assert_string_equal(url.member, cases[i].member);                                            \
    else                                                                                           \
      assert_null(url.member);                                                                     \
  } while (0)
    CHECK_TEXT(host);
    CHECK_TEXT(path);
    CHECK_TEXT(user);
    CHECK_TEXT(password);
#undef CHECK_TEXT
    if (!cases[i].unix_socket)
      assert_int_equal(url.port, cases[i].port);
    assert_int_equal(url.db, cases[i].db);
    char label[512];
    uow__redis_url_label(&url, label, sizeof(label));
    assert_string_equal(label, cases[i].label);
    uow__redis_url_free(&url);
    assert_null(url.password);
  }
}

/* Deliver one event through `url` and check the message: an error without `secret`. */
static void check_message_hides(const char *url, const char *secret, const char *must_say) {
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(url, "uow:test:secret", &sink), 0);
  uow_delivery ev = event("main:1", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  if (!err[0] || strstr(err, secret) || (must_say && !strstr(err, must_say)))
    fail_msg("url %s: message \"%s\"", url, err);
  uow_sink_close(&sink);
}

static void redis_url_password_never_appears_in_messages(void **state) {
  (void)state;
  const char *sock = env_or_fail("UOW_TEST_REDIS_SOCKET");
  char url[512];
  /* unreachable, TCP and unix */
  check_message_hides("redis://:Sup3rSecretPw@127.0.0.1:1/0", "Sup3rSecretPw", ":***@");
  check_message_hides("redis+unix://admin:Sup3rSecretPw@/nonexistent-uow-dir/redis.sock",
                      "Sup3rSecretPw", "admin:***@");
  /* reachable, and the server refuses AUTH (the default user has no password) */
  snprintf(url, sizeof(url), "redis+unix://:Sup3rSecretPw@%s", sock);
  check_message_hides(url, "Sup3rSecretPw", "AUTH");
  /* a password that Redis's own refusal happens to contain is masked there too */
  snprintf(url, sizeof(url), "redis+unix://:default@%s", sock);
  check_message_hides(url, "default", "AUTH");

  /* a real ACL user: the right password works, a wrong one is refused quietly */
  redisContext *c = oracle();
  freeReplyObject(run(c, "ACL SETUSER uow_sink_tester reset on >Sup3r:Secret@Pw ~* &* +@all"));
  run_and_free(c, "DEL %s", "uow:test:secret");
  snprintf(url, sizeof(url), "redis+unix://uow_sink_tester:Sup3r%%3ASecret%%40Pw@%s", sock);
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream(url, "uow:test:secret", &sink), 0);
  uow_delivery ev = event("main:1", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 1);
  uow_sink_close(&sink);
  snprintf(url, sizeof(url), "redis+unix://uow_sink_tester:Wr0ngSecretPw@%s", sock);
  check_message_hides(url, "Wr0ngSecretPw", "uow_sink_tester:***@");
  freeReplyObject(run(c, "ACL DELUSER uow_sink_tester"));
  run_and_free(c, "DEL %s", "uow:test:secret");
  redisFree(c);
}

/* ---- command sink ---- */

static void command_sink_writes_one_json_line_per_event(void **state) {
  (void)state;
  unlink("out.jsonl");
  uow_sink sink;
  assert_int_equal(uow_sink_command("cat >> out.jsonl", &sink), 0);
  assert_int_equal(sink.version, UOW_SINK_VERSION);
  assert_string_equal(sink.name, "command");
  uow_delivery batch[2] = {
      event("main:7", "user.registered", "42", "{\"name\":\"Ann\"}", 14),
      event("main:8", "user.deleted", NULL, NULL, 0),
  };
  batch[1].seq = 2;
  batch[1].attempt = 3;
  batch[1].created_at = -5;
  uow_delivery last = event("other:1", "caf\xc3\xa9", "", "h\xc3\xa9llo \xf0\x9f\x98\x80", 11);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, batch, 2, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 2);
  assert_int_equal(deliver(&sink, &last, 1, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 1);
  /* an empty batch runs nothing */
  assert_int_equal(deliver(&sink, NULL, 0, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, 0);
  uow_sink_close(&sink);

  char *text = slurp("out.jsonl", NULL);
  assert_string_equal(
      text, "{\"event_id\":\"main:7\",\"topic\":\"user.registered\",\"key\":\"42\","
            "\"unit_id\":\"0b6d2f1e-unit\",\"seq\":1,\"created_at\":1700000000000,\"attempt\":1,"
            "\"payload\":\"{\\\"name\\\":\\\"Ann\\\"}\",\"payload_encoding\":\"utf8\"}\n"
            "{\"event_id\":\"main:8\",\"topic\":\"user.deleted\",\"key\":null,"
            "\"unit_id\":\"0b6d2f1e-unit\",\"seq\":2,\"created_at\":-5,\"attempt\":3,"
            "\"payload\":\"\",\"payload_encoding\":\"utf8\"}\n"
            "{\"event_id\":\"other:1\",\"topic\":\"caf\xc3\xa9\",\"key\":\"\","
            "\"unit_id\":\"0b6d2f1e-unit\",\"seq\":1,\"created_at\":1700000000000,\"attempt\":1,"
            "\"payload\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\",\"payload_encoding\":\"utf8\"}\n");
  free(text);
}

static void command_sink_base64_encodes_payloads_that_are_not_utf8(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t len;
    const char *json; /* the expected "payload":...,"payload_encoding":... */
  } cases[] = {
      {"\xff\xfe\x00\x01", 4, "\"payload\":\"//4AAQ==\",\"payload_encoding\":\"base64\""},
      {"\xc0\x80", 2, "\"payload\":\"wIA=\",\"payload_encoding\":\"base64\""},     /* overlong */
      {"\xe0\x80\xaf", 3, "\"payload\":\"4ICv\",\"payload_encoding\":\"base64\""}, /* overlong */
      {"\xed\xa0\x80", 3, "\"payload\":\"7aCA\",\"payload_encoding\":\"base64\""}, /* surrogate */
      {"\xf4\x90\x80\x80", 4, "\"payload\":\"9JCAgA==\",\"payload_encoding\":\"base64\""},
      {"ok\xe2\x82", 4, "\"payload\":\"b2vigg==\",\"payload_encoding\":\"base64\""}, /* cut */
      {"\x80", 1, "\"payload\":\"gA==\",\"payload_encoding\":\"base64\""},
      {"\xf0\x9f\x98\x80", 4, "\"payload\":\"\xf0\x9f\x98\x80\",\"payload_encoding\":\"utf8\""},
      {"\xef\xbf\xbf", 3, "\"payload\":\"\xef\xbf\xbf\",\"payload_encoding\":\"utf8\""},
      {"\xf4\x8f\xbf\xbf", 4, "\"payload\":\"\xf4\x8f\xbf\xbf\",\"payload_encoding\":\"utf8\""},
      {"a\0b", 3, "\"payload\":\"a\\u0000b\",\"payload_encoding\":\"utf8\""},
  };
  enum { N = sizeof(cases) / sizeof(cases[0]) };
  uow_delivery batch[N];
  for (size_t i = 0; i < N; i++)
    batch[i] = event("main:1", "t", NULL, cases[i].bytes, cases[i].len);
  unlink("b64.jsonl");
  uow_sink sink;
  assert_int_equal(uow_sink_command("cat > b64.jsonl", &sink), 0);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, batch, N, &delivered, err, sizeof(err)), 0);
  assert_int_equal(delivered, N);
  uow_sink_close(&sink);

  char *text = slurp("b64.jsonl", NULL);
  char *line = text;
  for (size_t i = 0; i < N; i++) {
    char *end = strchr(line, '\n');
    assert_non_null(end);
    *end = '\0';
    char *tail = strstr(line, "\"payload\":");
    assert_non_null(tail);
    char expected[128];
    snprintf(expected, sizeof(expected), "%s}", cases[i].json);
    if (strcmp(tail, expected) != 0)
      fail_msg("case %zu: got %s, want %s", i, tail, expected);
    line = end + 1;
  }
  assert_string_equal(line, "");
  free(text);
}

static void command_sink_escapes_control_characters_and_quotes(void **state) {
  (void)state;
  unsigned char payload[40];
  size_t len = 0;
  for (unsigned c = 0; c < 0x20; c++)
    payload[len++] = (unsigned char)c;
  memcpy(payload + len, "\"\\/\x7f\xc3\xa9", 6);
  len += 6;
  uow_delivery ev = event("main:\"1\"", "a\"b\\c\n", "tab\there", payload, len);
  ev.unit_id = "bad\xff\xc3utf8"; /* not UTF-8: replaced, so the line stays JSON */
  unlink("esc.jsonl");
  uow_sink sink;
  assert_int_equal(uow_sink_command("cat > esc.jsonl", &sink), 0);
  char err[512];
  size_t delivered;
  assert_int_equal(deliver(&sink, &ev, 1, &delivered, err, sizeof(err)), 0);
  uow_sink_close(&sink);

  char *text = slurp("esc.jsonl", NULL);
  assert_string_equal(
      text, "{\"event_id\":\"main:\\\"1\\\"\",\"topic\":\"a\\\"b\\\\c\\n\",\"key\":\"tab\\there\","
            "\"unit_id\":\"bad\\ufffd\\ufffdutf8\",\"seq\":1,\"created_at\":1700000000000,"
            "\"attempt\":1,\"payload\":\""
            "\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007"
            "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f"
            "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
            "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
            "\\\"\\\\/\\u007f\xc3\xa9\",\"payload_encoding\":\"utf8\"}\n");
  free(text);
}

/* Python decodes every line (json, then base64 when so marked) and writes the
 * payload back as hex: an oracle independent of the sink's own code. */
static void command_sink_output_decodes_to_the_original_payloads(void **state) {
  (void)state;
  if (!python3_available())
    fail_msg("python3 is missing: scripts/deps.sh installs it");
  enum { N = 64 };
  static unsigned char payloads[N][300];
  uow_delivery batch[N];
  unsigned seed = 12345;
  for (size_t i = 0; i < N; i++) {
    size_t len = i * 4 + (i % 3); /* 0..254, every length mod 3 */
    for (size_t j = 0; j < len; j++) {
      seed = seed * 1103515245u + 12345u;
      /* even events: random ASCII and controls (UTF-8); odd ones: any byte */
      payloads[i][j] = (unsigned char)(i % 2 ? seed >> 16 : (seed >> 16) % 128);
    }
    batch[i] = event("main:1", "t", i % 3 ? "k" : NULL, payloads[i], len);
  }
  unlink("decoded.txt");
  uow_sink sink;
  assert_int_equal(
      uow_sink_command("python3 -c 'import sys, json, base64\n"
                       "out = open(\"decoded.txt\", \"w\")\n"
                       "for line in sys.stdin:\n"
                       "    e = json.loads(line)\n"
                       "    p = e[\"payload\"]\n"
                       "    b = base64.b64decode(p, validate=True) if e[\"payload_encoding\"] == "
                       "\"base64\" else p.encode(\"utf-8\")\n"
                       "    out.write(e[\"payload_encoding\"] + \" \" + b.hex() + \"\\n\")\n'",
                       &sink),
      0);
  char err[512];
  size_t delivered;
  int rc = deliver(&sink, batch, N, &delivered, err, sizeof(err));
  if (rc)
    fail_msg("deliver: %d %s", rc, err);
  uow_sink_close(&sink);

  char *text = slurp("decoded.txt", NULL);
  char *line = text;
  bool saw_base64 = false;
  for (size_t i = 0; i < N; i++) {
    char *end = strchr(line, '\n');
    assert_non_null(end);
    *end = '\0';
    char *hex = strchr(line, ' ') + 1;
    if (strncmp(line, "base64 ", 7) == 0)
      saw_base64 = true;
    if (i % 2 == 0)
      assert_true(strncmp(line, "utf8 ", 5) == 0);
    assert_int_equal(strlen(hex), batch[i].payload_len * 2);
    for (size_t j = 0; j < batch[i].payload_len; j++) {
      unsigned byte;
      assert_int_equal(sscanf(hex + 2 * j, "%2x", &byte), 1);
      assert_int_equal(byte, payloads[i][j]);
    }
    line = end + 1;
  }
  assert_true(saw_base64);
  free(text);
}

static void command_sink_failure_exit_status_is_eio_and_nothing_counts_delivered(void **state) {
  (void)state;
  uow_delivery batch[3] = {event("main:1", "t", "k", "a", 1), event("main:2", "t", "k", "b", 1),
                           event("main:3", "t", "k", "c", 1)};
  char err[512];
  size_t delivered;
  uow_sink sink;

  assert_int_equal(uow_sink_command("cat > /dev/null; exit 3", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 3, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "status 3"));
  assert_non_null(strstr(err, "'cat'"));
  uow_sink_close(&sink);

  assert_int_equal(uow_sink_command("kill -9 $$", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 3, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "signal 9"));
  uow_sink_close(&sink);

  assert_int_equal(uow_sink_command("uow-no-such-command-anywhere", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 3, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "status 127"));
  uow_sink_close(&sink);

  /* a long command is named by its first word, not quoted whole */
  char long_command[600];
  int at = snprintf(long_command, sizeof(long_command), "exit 4 # ");
  memset(long_command + at, 'x', sizeof(long_command) - (size_t)at - 1);
  long_command[sizeof(long_command) - 1] = '\0';
  assert_int_equal(uow_sink_command(long_command, &sink), 0);
  assert_int_equal(deliver(&sink, batch, 3, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "'exit'"));
  assert_non_null(strstr(err, "status 4"));
  assert_null(strstr(err, "xxxx"));
  uow_sink_close(&sink);

  assert_int_equal(uow_sink_command(NULL, &sink), UOW_EINVAL);
  assert_int_equal(uow_sink_command("", &sink), UOW_EINVAL);
  assert_int_equal(uow_sink_command("true", NULL), UOW_EINVAL);
}

/* Leading assignments often carry credentials: messages skip them. */
static void command_sink_messages_never_quote_leading_assignments(void **state) {
  (void)state;
  uow_delivery batch[1] = {event("main:1", "t", "k", "a", 1)};
  char err[512];
  size_t delivered;
  uow_sink sink;

  assert_int_equal(uow_sink_command(" API_TOKEN=s3cret-1 X=s3cret-2 exit 4", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 1, &delivered, err, sizeof(err)), UOW_EIO);
  assert_non_null(strstr(err, "'exit'"));
  assert_null(strstr(err, "s3cret"));
  uow_sink_close(&sink);

  /* a quoted value cannot be skipped word by word: the command goes unnamed */
  assert_int_equal(uow_sink_command("API_TOKEN='s3cret 1' exit 5", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 1, &delivered, err, sizeof(err)), UOW_EIO);
  assert_non_null(strstr(err, "'command'"));
  assert_non_null(strstr(err, "status 5"));
  assert_null(strstr(err, "s3cret"));
  uow_sink_close(&sink);

  /* a word with '=' that is not an assignment is the command's name */
  assert_int_equal(uow_sink_command("/bin/sh -c 'exit 6' a=b", &sink), 0);
  assert_int_equal(deliver(&sink, batch, 1, &delivered, err, sizeof(err)), UOW_EIO);
  assert_non_null(strstr(err, "'/bin/sh'"));
  uow_sink_close(&sink);
}

static void command_sink_that_exits_without_reading_does_not_kill_the_process(void **state) {
  (void)state;
  enum { N = 2000 };
  static char payload[1024];
  memset(payload, 'p', sizeof(payload));
  static uow_delivery batch[N];
  for (size_t i = 0; i < N; i++)
    batch[i] = event("main:1", "t", "k", payload, sizeof(payload)); /* ~2 MB: past any pipe */
  char err[512];
  size_t delivered;
  uow_sink sink;

  /* status 0 decides, as documented, even though nothing was read */
  assert_int_equal(uow_sink_command("true", &sink), 0);
  for (int round = 0; round < 3; round++) {
    assert_int_equal(deliver(&sink, batch, N, &delivered, err, sizeof(err)), 0);
    assert_int_equal(delivered, N);
  }
  uow_sink_close(&sink);

  assert_int_equal(uow_sink_command("exec 0<&-; sleep 0.1; exit 5", &sink), 0);
  assert_int_equal(deliver(&sink, batch, N, &delivered, err, sizeof(err)), UOW_EIO);
  assert_int_equal(delivered, 0);
  assert_non_null(strstr(err, "status 5"));
  uow_sink_close(&sink);

  sigset_t mask, pending;
  assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
  assert_false(sigismember(&mask, SIGPIPE));
  assert_int_equal(sigpending(&pending), 0);
  assert_false(sigismember(&pending, SIGPIPE));
}

static void command_sink_runs_the_command_with_sigpipe_at_its_default(void **state) {
  (void)state;
  /* The relay's thread ignores nothing, but the process might: the command
   * must still be able to die of SIGPIPE, as `yes | head` expects. */
  struct sigaction ignore = {0}, old;
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  assert_int_equal(sigaction(SIGPIPE, &ignore, &old), 0);
  uow_sink sink;
  /* SIGPIPE is signal 13: bit 0x1000 of the SigIgn mask of the command's own children */
  assert_int_equal(uow_sink_command("cat > /dev/null; "
                                    "m=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status); "
                                    "[ -n \"$m\" ] && [ $(( 0x$m & 4096 )) -eq 0 ]",
                                    &sink),
                   0);
  uow_delivery ev = event("main:1", "t", "k", "p", 1);
  char err[512];
  size_t delivered;
  int rc = deliver(&sink, &ev, 1, &delivered, err, sizeof(err));
  sigaction(SIGPIPE, &old, NULL);
  uow_sink_close(&sink);
  if (rc)
    fail_msg("the command saw SIGPIPE ignored: %s", err);
}

/* ---- uow_sink_close ---- */

static int destroyed;
static void count_destroy(void *ctx) {
  assert_ptr_equal(ctx, &destroyed);
  destroyed++;
}

static void sink_close_calls_destroy_once_and_clears_the_sink(void **state) {
  (void)state;
  uow_sink_close(NULL);
  uow_sink sink = {UOW_SINK_VERSION, "mine", NULL, count_destroy, &destroyed};
  uow_sink_close(&sink);
  assert_int_equal(destroyed, 1);
  assert_null(sink.destroy);
  assert_null(sink.ctx);
  assert_null(sink.name);
  uow_sink_close(&sink); /* cleared: nothing to call again */
  assert_int_equal(destroyed, 1);
  uow_sink none = {UOW_SINK_VERSION, "none", NULL, NULL, NULL};
  uow_sink_close(&none);
}

/* ---- allocation failures ---- */

static long allocations, fail_at, outstanding;
static void *failing_malloc(size_t size) {
  if (fail_at && ++allocations == fail_at)
    return NULL;
  void *p = malloc(size);
  if (p)
    outstanding++;
  return p;
}
static void *failing_realloc(void *ptr, size_t size) {
  if (fail_at && ++allocations == fail_at)
    return NULL;
  void *p = realloc(ptr, size);
  if (p && !ptr)
    outstanding++;
  return p;
}
static void failing_free(void *ptr) {
  if (ptr)
    outstanding--;
  free(ptr);
}

/* Make both sinks and deliver through them; the first failing step's code. */
static int both_sinks_once(void) {
  uow_sink sink;
  uow_delivery batch[2] = {event("main:1", "t", "k", "payload", 7),
                           event("main:2", "t", NULL, "\xff\xfe", 2)};
  char err[512];
  size_t delivered;
  int rc = uow_sink_command("cat > /dev/null", &sink);
  if (rc)
    return rc;
  rc = deliver(&sink, batch, 2, &delivered, err, sizeof(err));
  uow_sink_close(&sink);
  if (rc)
    return rc;
  char url[256];
  snprintf(url, sizeof(url), "redis+unix://:pw@%s", env_or_fail("UOW_TEST_REDIS_SOCKET"));
  rc = uow_sink_redis_stream(url, "uow:test:alloc", &sink);
  if (rc)
    return rc;
  rc = deliver(&sink, batch, 2, &delivered, err, sizeof(err)); /* AUTH refused: a message */
  uow_sink_close(&sink);
  return rc == UOW_EIO ? 0 : rc;
}

static void sinks_report_enomem_when_any_allocation_fails(void **state) {
  (void)state;
  assert_int_equal(uow_set_allocator(failing_malloc, failing_realloc, failing_free), 0);
  long k;
  for (k = 1; k < 1000; k++) {
    allocations = 0;
    fail_at = k;
    outstanding = 0;
    int rc = both_sinks_once();
    assert_int_equal(outstanding, 0);
    if (rc == 0 && allocations < k)
      break; /* ran to the end without reaching the failing allocation */
    if (rc != UOW_ENOMEM && rc != 0)
      fail_msg("allocation %ld failing: code %d", k, rc);
  }
  assert_true(k > 3 && k < 1000);
  assert_int_equal(uow_set_allocator(NULL, NULL, NULL), 0);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(redis_stream_sink_appends_every_event_with_its_event_id),
      cmocka_unit_test(redis_stream_sink_selects_the_database_in_the_url),
      cmocka_unit_test(redis_stream_sink_reports_eio_when_redis_is_unreachable_and_recovers),
      cmocka_unit_test(redis_stream_sink_reconnects_after_the_server_drops_its_connection),
      cmocka_unit_test(redis_stream_sink_counts_the_events_before_a_refused_xadd),
      cmocka_unit_test(redis_stream_sink_rejects_bad_urls),
      cmocka_unit_test(redis_url_parses_host_port_db_and_credentials),
      cmocka_unit_test(redis_url_password_never_appears_in_messages),
      cmocka_unit_test(command_sink_writes_one_json_line_per_event),
      cmocka_unit_test(command_sink_messages_never_quote_leading_assignments),
      cmocka_unit_test(command_sink_base64_encodes_payloads_that_are_not_utf8),
      cmocka_unit_test(command_sink_escapes_control_characters_and_quotes),
      cmocka_unit_test(command_sink_output_decodes_to_the_original_payloads),
      cmocka_unit_test(command_sink_failure_exit_status_is_eio_and_nothing_counts_delivered),
      cmocka_unit_test(command_sink_that_exits_without_reading_does_not_kill_the_process),
      cmocka_unit_test(command_sink_runs_the_command_with_sigpipe_at_its_default),
      cmocka_unit_test(sink_close_calls_destroy_once_and_clears_the_sink),
      cmocka_unit_test(sinks_report_enomem_when_any_allocation_fails),
  };
  return cmocka_run_group_tests_name("sinks", tests, NULL, NULL);
}
