/*
 * fuzz_redis_reply.c - what libuow makes of the bytes a Redis server sends:
 * the Redis store (src/stores/redis.c: the AUTH and SELECT replies of its
 * handshake, the HGETALL reply a read turns into a row, the SCRIPT LOAD and
 * EVALSHA replies of apply, NOSCRIPT included) and the Redis Streams sink
 * (src/sinks/redis_stream.c: its handshake and the XADD replies of a batch).
 *
 * The input is what a server sends. The code under test is reached the way
 * the library reaches a real server, through its own ops and sink on a unix
 * socket, so every reply goes through hiredis's reader and then the very code
 * that handles it: a thread of this program plays the server, accepts the
 * connection, writes the input, shuts its side down (so a truncated reply
 * ends in an error, not a wait) and reads whatever the client sends until it
 * hangs up. The first byte chooses the operation and the URL; the rest is the
 * server's bytes. A hiredis reader of this program parses them too, as the
 * oracle of the properties checked:
 *  - an operation succeeds or fails with UOW_EIO, never anything else;
 *  - a failure's message is set, and never holds the URL's password, even
 *    when the server quotes it back;
 *  - a read succeeds only on an array of strings in pairs, wherever a
 *    "__deleted" name is in it; it gives a row only when no name is exactly
 *    "__deleted", and then each column holds the bytes (or the number) of a
 *    field of its exact name, or NULL when there is none;
 *  - apply and the sink succeed exactly when every intent or event counts
 *    as done, and never count more than they were given.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "uow.h"
#include "uow/store.h"

extern const uow_store_ops uow__redis_store;

/* In every URL with a password; the server may send it back in an error. */
#define PASSWORD "fuzz-s3cret"
/* More than this is nothing a reply handler sees that a shorter one does not. */
#define MAX_INPUT 65536

enum { OP_READ, OP_APPLY, OP_STREAM, OP_COUNT };
enum { MODE_PASSWORD = 1 << 2, MODE_USER = 1 << 3, MODE_DB = 1 << 4 };

/* ---- the entity a read fills ---- */

typedef struct fz_object {
  int64_t id;
  char *name;
  double score;
  bool active;
  uow_blob data;
  int64_t version;
} fz_object;

static const uow_column fz_columns[] = {
    UOW_COLUMN(fz_object, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(fz_object, name, UOW_TEXT, 0),
    UOW_COLUMN(fz_object, score, UOW_DOUBLE, 0),
    UOW_COLUMN(fz_object, active, UOW_BOOL, 0),
    UOW_COLUMN(fz_object, data, UOW_BLOB, UOW_NULLABLE),
    UOW_COLUMN(fz_object, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity fz_entity = UOW_ENTITY(fz_object, "fz", fz_columns);
#define NCOLUMNS (sizeof(fz_columns) / sizeof(fz_columns[0]))

/* ---- the server ---- */

static char dir[96]; /* short enough for a socket path inside it */
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static int listener = -1;

static void remove_socket(void) {
  unlink(sock_path);
  rmdir(dir);
}

static void start_listener(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%.70s/redis-reply-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  FUZZ_CHECK(mkdtemp(dir) != NULL);
  snprintf(sock_path, sizeof(sock_path), "%s/s", dir);
  struct sockaddr_un addr = {0};
  addr.sun_family = AF_UNIX;
  FUZZ_CHECK(strlen(sock_path) < sizeof(addr.sun_path));
  memcpy(addr.sun_path, sock_path, strlen(sock_path) + 1);
  listener = socket(AF_UNIX, SOCK_STREAM, 0);
  FUZZ_CHECK(listener >= 0);
  FUZZ_CHECK(bind(listener, (struct sockaddr *)&addr, sizeof(addr)) == 0);
  FUZZ_CHECK(listen(listener, 4) == 0);
  atexit(remove_socket);
}

typedef struct server {
  const uint8_t *data;
  size_t size;
} server;

/* One connection: send the input, then take what the client sends until it hangs up. */
static void *serve(void *arg) {
  const server *s = arg;
  int fd;
  do
    fd = accept(listener, NULL, NULL);
  while (fd < 0 && errno == EINTR);
  FUZZ_CHECK(fd >= 0);
  for (size_t off = 0; off < s->size;) {
    ssize_t n = send(fd, s->data + off, s->size - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* the client hung up without reading it all */
    off += (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  char sink[4096];
  for (;;) {
    ssize_t n = recv(fd, sink, sizeof(sink), 0);
    if (n == 0 || (n < 0 && errno != EINTR))
      break;
  }
  close(fd);
  return NULL;
}

/* ---- the oracle: the same bytes through a reader of our own ---- */

typedef struct replies {
  redisReply *r[16];
  size_t n;
  bool bad; /* the reader refused the bytes after the n replies */
} replies;

static void parse_replies(const uint8_t *data, size_t size, replies *out) {
  memset(out, 0, sizeof(*out));
  redisReader *reader = redisReaderCreate();
  FUZZ_CHECK(reader != NULL);
  FUZZ_CHECK(redisReaderFeed(reader, (const char *)data, size) == REDIS_OK);
  while (out->n < sizeof(out->r) / sizeof(out->r[0])) {
    void *reply = NULL;
    if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
      out->bad = true;
      break;
    }
    if (!reply)
      break;
    out->r[out->n++] = reply;
  }
  redisReaderFree(reader);
}

static void free_replies(replies *rs) {
  for (size_t i = 0; i < rs->n; i++)
    freeReplyObject(rs->r[i]);
}

static bool is_error(const redisReply *r) { return r->type == REDIS_REPLY_ERROR; }

/* How many replies the handshake of `mode` takes, and whether it gets through them. */
static size_t handshake_replies(unsigned mode, const replies *rs, bool *ok) {
  size_t need = !!(mode & MODE_PASSWORD) + !!(mode & MODE_DB);
  *ok = rs->n >= need;
  for (size_t i = 0; *ok && i < need; i++)
    *ok = !is_error(rs->r[i]);
  return need;
}

/* Whether the URL of this input has the password (a server may send the text anyway). */
static bool secret;

static void check_message(int rc, const char *message) {
  FUZZ_CHECK(rc == 0 || rc == UOW_EIO);
  if (rc) {
    FUZZ_CHECK(message[0] != '\0');
    FUZZ_CHECK(!secret || strstr(message, PASSWORD) == NULL);
  }
}

/* ---- the store: read ---- */

typedef struct read_result {
  bool got_row;
  uow_value row[NCOLUMNS];
  char text[NCOLUMNS][1024]; /* bytes of text and blob values (the row's live only in the call) */
} read_result;

static int take_row(void *ctx, const uow_value *row) {
  read_result *res = ctx;
  FUZZ_CHECK(!res->got_row);
  res->got_row = true;
  for (size_t i = 0; i < NCOLUMNS; i++) {
    res->row[i] = row[i];
    if (!row[i].is_null && (row[i].type == UOW_TEXT || row[i].type == UOW_BLOB)) {
      size_t n =
          row[i].v.bytes.size < sizeof(res->text[i]) ? row[i].v.bytes.size : sizeof(res->text[i]);
      if (n)
        memcpy(res->text[i], row[i].v.bytes.data, n);
      res->row[i].v.bytes.data = res->text[i];
    }
  }
  return UOW_OK;
}

static bool same_bytes(const redisReply *r, const char *s, size_t len) {
  return r->len == len && (len == 0 || memcmp(r->str, s, len) == 0);
}

/* Whether the field text `v` holds what the store made of it for `col`. */
static bool value_matches(const uow_column *col, const redisReply *v, const uow_value *got) {
  char *end;
  switch (col->type) {
  case UOW_INT64:
    return v->len > 0 && strtoll(v->str, &end, 10) == got->v.i && end == v->str + v->len;
  case UOW_DOUBLE: {
    double d = strtod(v->str, &end);
    return v->len > 0 && end == v->str + v->len &&
           (d == got->v.d || (d != d && got->v.d != got->v.d));
  }
  case UOW_BOOL:
    return v->len == 1 && v->str[0] == (got->v.b ? '1' : '0');
  case UOW_TEXT:
  case UOW_BLOB:
    return got->v.bytes.size == v->len && (v->len > sizeof(((read_result *)0)->text[0]) ||
                                           same_bytes(v, got->v.bytes.data, got->v.bytes.size));
  }
  return false;
}

static void check_row(const redisReply *hash, const read_result *res) {
  for (size_t i = 0; i < NCOLUMNS; i++) {
    const uow_column *col = &fz_columns[i];
    const uow_value *got = &res->row[i];
    FUZZ_CHECK(got->type == col->type);
    bool named = false, matched = false;
    for (size_t f = 0; f + 1 < hash->elements; f += 2) {
      if (!same_bytes(hash->element[f], col->name, strlen(col->name)))
        continue;
      named = true;
      matched = matched || (!got->is_null && value_matches(col, hash->element[f + 1], got));
    }
    FUZZ_CHECK(named == !got->is_null);
    FUZZ_CHECK(!named || matched);
  }
}

static void run_read(uow_store_conn *conn, const replies *rs, size_t first) {
  read_result res;
  memset(&res, 0, sizeof(res));
  uow_status st = {0, ""};
  const uow_value key = uow_int64(7);
  int rc = uow__redis_store.read(conn, &fz_entity, NULL, &key, 1, 0, take_row, &res, &st);
  check_message(rc, st.message);
  const redisReply *hash = first < rs->n ? rs->r[first] : NULL;
  if (rc) {
    FUZZ_CHECK(!res.got_row);
    return;
  }
  /* Success: the reply was a complete array of strings, in pairs. */
  FUZZ_CHECK(hash && hash->type == REDIS_REPLY_ARRAY && hash->elements % 2 == 0);
  bool tombstone = false;
  for (size_t f = 0; f < hash->elements; f++) {
    FUZZ_CHECK(hash->element[f]->type == REDIS_REPLY_STRING);
    if (f % 2 == 0 && same_bytes(hash->element[f], "__deleted", 9))
      tombstone = true;
  }
  FUZZ_CHECK(res.got_row == (hash->elements > 0 && !tombstone));
  if (res.got_row)
    check_row(hash, &res);
}

/* ---- the store: apply ---- */

static void run_apply(uow_store_conn *conn, size_t n) {
  uow_intent_field fields[2] = {{"name", "ada", 3}, {"score", "1.5", 3}};
  uow_intent intents[8];
  char keys[8][4];
  for (size_t i = 0; i < n; i++) {
    snprintf(keys[i], sizeof(keys[i]), "%zu", i + 1);
    intents[i] =
        (uow_intent){"fz", keys[i], (int64_t)i + 1, i == 2, i == 2 ? NULL : fields, i == 2 ? 0 : 2};
  }
  size_t applied = 99;
  uow_status st = {0, ""};
  int rc = uow__redis_store.apply(conn, intents, n, &applied, &st);
  check_message(rc, st.message);
  FUZZ_CHECK(applied <= n);
  FUZZ_CHECK((rc == 0) == (applied == n));
}

/* ---- the stream sink ---- */

static void run_stream(const char *url, size_t n) {
  uow_sink sink;
  FUZZ_CHECK(uow_sink_redis_stream(url, "fz-stream", &sink) == 0);
  uow_delivery events[8];
  char ids[8][16];
  for (size_t i = 0; i < n; i++) {
    snprintf(ids[i], sizeof(ids[i]), "main:%zu", i + 1);
    events[i] = (uow_delivery){
        ids[i], "main", (int64_t)i + 1, "unit-1", (int64_t)i + 1, "fz.topic", i % 2 ? NULL : "k",
        "{}",   2,      1700000000000,  1};
  }
  size_t delivered = 99;
  char err[512] = "";
  int rc = sink.deliver(sink.ctx, events, n, &delivered, err, sizeof(err));
  check_message(rc, err);
  FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
  FUZZ_CHECK(delivered <= n);
  FUZZ_CHECK((rc == 0) == (delivered == n));
  sink.destroy(sink.ctx);
}

/*
 * Whether the bytes announce an array of more than MAX_INPUT elements
 * ("*2147483647\r\n"). hiredis 0.14 allocates room for the announced count
 * at once (16 GiB for that one), in the client as in the oracle: a
 * limitation of hiredis that no handling of ours can change, and an input of
 * at most MAX_INPUT bytes cannot fill such an array anyway. Crude: a '*'
 * inside a string counts too, which only skips an input.
 */
static bool announces_a_huge_array(const uint8_t *data, size_t size) {
  for (size_t i = 0; i < size; i++) {
    if (data[i] != '*')
      continue;
    unsigned long long count = 0;
    for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9' && count <= MAX_INPUT; j++)
      count = count * 10 + (data[j] - '0');
    if (count > MAX_INPUT)
      return true;
  }
  return false;
}

/* ---- the entry point ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > MAX_INPUT || announces_a_huge_array(data + 1, size - 1))
    return 0;
  if (listener < 0)
    start_listener();
  unsigned mode = data[0];
  unsigned op = (mode & 3) % OP_COUNT;
  size_t n = 1 + (mode >> 5); /* intents or events: 1..8 */
  server srv = {data + 1, size - 1};

  /* A user needs a password. */
  if (mode & MODE_USER)
    mode |= MODE_PASSWORD;
  secret = mode & MODE_PASSWORD;
  char url[512];
  snprintf(url, sizeof(url), "redis+unix://%s%s%s%s", mode & MODE_USER ? "fz" : "",
           mode & MODE_PASSWORD ? ":" PASSWORD "@" : "", sock_path, mode & MODE_DB ? "?db=3" : "");

  replies rs;
  parse_replies(srv.data, srv.size, &rs);

  pthread_t thread;
  FUZZ_CHECK(pthread_create(&thread, NULL, serve, &srv) == 0);
  if (op == OP_STREAM) {
    run_stream(url, n);
  } else {
    uow_store_config cfg = {1, "fz"};
    uow_store_driver *drv = NULL;
    uow_status st = {0, ""};
    FUZZ_CHECK(uow__redis_store.open(url, &cfg, &drv, &st) == 0);
    uow_store_conn *conn = NULL;
    int rc = uow__redis_store.connect(drv, &conn, &st);
    check_message(rc, st.message);
    bool handshake_ok;
    size_t first = handshake_replies(mode, &rs, &handshake_ok);
    /* AUTH and SELECT pass on any reply but an error, and fail without one. */
    FUZZ_CHECK((rc == 0) == handshake_ok);
    if (!rc) {
      if (op == OP_READ)
        run_read(conn, &rs, first);
      else
        run_apply(conn, n);
    }
    uow__redis_store.disconnect(conn);
    uow__redis_store.close(drv);
  }
  FUZZ_CHECK(pthread_join(thread, NULL) == 0);
  free_replies(&rs);
  return 0;
}
