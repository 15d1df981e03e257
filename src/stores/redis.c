/*
 * redis.c - the Redis store: uow/store.h for a store that cannot join a
 * transaction (caps UOW_STORE_INTENTS), over hiredis.
 *
 * The core never writes to Redis during a unit. At commit the unit's changes
 * become intents in its SQL outbox; afterwards the core (and later the relay)
 * hands them to `apply`, here. So this store has no transactions (begin and
 * its kin are NULL: the core only calls them for UOW_STORE_TRANSACTIONAL
 * stores), no SQL, and `write` refuses. What it does:
 *  - An object is a hash at "<table>:<key>" (an integer key in decimal), one
 *    field per non-NULL column plus "__version", and "__deleted" = "1" for a
 *    tombstone. `read` takes a primary key only and gives no row for a
 *    missing hash or a tombstone.
 *  - `apply` runs one Lua script per intent (loaded once per connection with
 *    SCRIPT LOAD, then EVALSHA; loaded again after a NOSCRIPT reply), all of
 *    a batch pipelined. The script writes only over an older "__version" (or
 *    none), and a delete leaves a tombstone with its version, so intents can
 *    come twice, late or out of order and an object never moves backwards.
 *    Versions are compared as decimal strings (Lua numbers are doubles).
 *  - `open` only parses the URL (src/sinks/redis_url.c): units must commit
 *    while Redis is away, their intents are applied later. `connect` reaches
 *    the server (2 s timeouts), sends AUTH and SELECT when the URL asks.
 *  - The password lives only in the parsed URL. Messages name the server by
 *    a label with "***" in its place, and any text quoted from Redis or
 *    hiredis has the password masked too.
 *  - hiredis writes with plain write(), so commands run under the SIGPIPE
 *    guard of sinks/sink.h. hiredis allocates with its own allocator;
 *    everything of ours goes through uow__malloc & co.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>

#include "sinks/redis_url.h"
#include "sinks/sink.h"
#include "util/util.h"

/* Connect, read and write timeout. */
#define REDIS_TIMEOUT_SECONDS 2
/* Entities have at most 64 columns (the core's limit). */
#define MAX_COLUMNS 64
/* Hash fields of our own; columns may not use these names. */
#define VERSION_FIELD "__version"
#define DELETED_FIELD "__deleted"

/*
 * KEYS[1] the object's hash; ARGV[1] version, ARGV[2] "put" or "del", then
 * field/value pairs. Returns 1 when written, 0 when the hash holds the same
 * or a newer version. Versions are canonical non-negative decimals, so a
 * longer one is larger and equal lengths compare as strings.
 */
static const char apply_script[] =
    "local cur = redis.call('HGET', KEYS[1], '" VERSION_FIELD "')\n"
    "local v = ARGV[1]\n"
    "if cur and (#cur > #v or (#cur == #v and cur >= v)) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "if ARGV[2] == 'del' then\n"
    "  redis.call('HSET', KEYS[1], '" VERSION_FIELD "', v, '" DELETED_FIELD "', '1')\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], '" VERSION_FIELD "', v, unpack(ARGV, 3))\n"
    "end\n"
    "return 1\n";

struct uow_store_driver {
  uow_redis_url url;
  char label[512]; /* the URL for messages, password masked */
};

struct uow_store_conn {
  uow_store_driver *drv;
  redisContext *c;
  char sha[41]; /* the script's SHA1 once loaded on this connection, else "" */
  bool broken;  /* a batch was half built or half read: never reuse */
  uint64_t round_trips;
};

/* ---- messages ---- */

/*
 * Set `st` to "<label>: <fmt>" with every occurrence of the password replaced
 * by "***" (texts quoted from Redis and hiredis are not trusted to leave it
 * out). No allocation, so it works when memory is short. Returns `code`.
 */
UOW_PRINTF(4, 5)
static int fail(const uow_store_driver *drv, uow_status *st, int code, const char *fmt, ...) {
  if (!st)
    return code;
  char text[1024];
  int prefix = snprintf(text, sizeof(text), "%s: ", drv->label);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text + prefix, sizeof(text) - (size_t)prefix, fmt, ap);
  va_end(ap);
  const char *secret = drv->url.password;
  size_t secret_len = secret ? strlen(secret) : 0, out = 0, cap = sizeof(st->message) - 1;
  for (const char *p = text; *p && out < cap;) {
    if (secret_len && strncmp(p, secret, secret_len) == 0) {
      for (const char *m = "***"; *m && out < cap; m++)
        st->message[out++] = *m;
      p += secret_len;
    } else {
      st->message[out++] = *p++;
    }
  }
  st->message[out] = '\0';
  st->code = code;
  return code;
}

static const char *errstr(const redisContext *c) {
  return c && c->errstr[0] ? c->errstr : "no reply";
}

/* ---- driver and connections ---- */

static int redis_open(const char *url, const uow_store_config *cfg, uow_store_driver **out,
                      uow_status *st) {
  (void)cfg;
  *out = NULL;
  uow_store_driver *drv = uow__calloc(1, sizeof(*drv));
  if (!drv)
    return uow_status_set(st, UOW_ENOMEM, "out of memory");
  int rc = uow__redis_url_parse(url, &drv->url);
  if (rc) {
    uow__free(drv);
    /* The URL is not quoted: it did not parse, so its password cannot be found to mask. */
    const char *path = url && strncmp(url, "redis+unix://", 13) == 0 ? strchr(url + 13, '/') : NULL;
    size_t path_len = path ? strcspn(path, "?#") : 0;
    if (rc == UOW_EINVAL && path_len >= sizeof(((struct sockaddr_un *)0)->sun_path))
      return uow_status_set(st, rc,
                            "the socket path has %zu bytes; a unix socket address holds %zu",
                            path_len, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return uow_status_set(st, rc,
                          rc == UOW_ENOMEM
                              ? "out of memory"
                              : "not a Redis URL (expected redis://[[user]:password@]host[:port]"
                                "[/db] or redis+unix://[[user]:password@]/path/to/socket[?db=N])");
  }
  uow__redis_url_label(&drv->url, drv->label, sizeof(drv->label));
  *out = drv;
  return UOW_OK;
}

static void redis_close(uow_store_driver *drv) {
  if (!drv)
    return;
  uow__redis_url_free(&drv->url);
  uow__free(drv);
}

static unsigned redis_max_connections(uow_store_driver *drv) {
  (void)drv;
  return 0;
}

/* One command while setting up a connection: UOW_EIO when it fails or Redis refuses it. */
static int setup_command(uow_store_conn *conn, int argc, const char **argv, const size_t *lens,
                         uow_status *st) {
  redisReply *reply = redisCommandArgv(conn->c, argc, argv, lens);
  conn->round_trips++;
  if (!reply)
    return fail(conn->drv, st, UOW_EIO, "%s: %s", argv[0], errstr(conn->c));
  int rc = UOW_OK;
  if (reply->type == REDIS_REPLY_ERROR)
    rc = fail(conn->drv, st, UOW_EIO, "%s refused: %s", argv[0], reply->str ? reply->str : "");
  freeReplyObject(reply);
  return rc;
}

static int handshake(uow_store_conn *conn, uow_status *st) {
  const uow_redis_url *url = &conn->drv->url;
  const struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};
  if (redisSetTimeout(conn->c, timeout) != REDIS_OK)
    return fail(conn->drv, st, UOW_EIO, "cannot set timeouts: %s", strerror(errno));
  int rc;
  if (url->password) {
    const char *argv[3] = {"AUTH", url->user ? url->user : url->password, url->password};
    size_t lens[3] = {4, strlen(argv[1]), strlen(url->password)};
    if ((rc = setup_command(conn, url->user ? 3 : 2, argv, lens, st)))
      return rc;
  }
  if (url->db) {
    char db[16];
    int len = snprintf(db, sizeof(db), "%d", url->db);
    const char *argv[2] = {"SELECT", db};
    const size_t lens[2] = {6, (size_t)len};
    if ((rc = setup_command(conn, 2, argv, lens, st)))
      return rc;
  }
  return UOW_OK;
}

static void redis_disconnect(uow_store_conn *conn) {
  if (!conn)
    return;
  if (conn->c)
    redisFree(conn->c);
  uow__free(conn);
}

static int redis_connect(uow_store_driver *drv, uow_store_conn **out, uow_status *st) {
  *out = NULL;
  uow_store_conn *conn = uow__calloc(1, sizeof(*conn));
  if (!conn)
    return fail(drv, st, UOW_ENOMEM, "connect: out of memory");
  conn->drv = drv;
  const struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};
  uow_sigpipe_guard guard;
  uow__sigpipe_block(&guard);
  conn->c = drv->url.unix_socket ? redisConnectUnixWithTimeout(drv->url.path, timeout)
                                 : redisConnectWithTimeout(drv->url.host, drv->url.port, timeout);
  int rc;
  if (!conn->c)
    rc = fail(drv, st, UOW_ENOMEM, "cannot connect: out of memory");
  else if (conn->c->err)
    rc = fail(drv, st, UOW_EIO, "cannot connect: %s", conn->c->errstr);
  else
    rc = handshake(conn, st);
  uow__sigpipe_restore(&guard);
  if (rc) {
    redis_disconnect(conn);
    return rc;
  }
  *out = conn;
  return UOW_OK;
}

static bool redis_healthy(uow_store_conn *conn) {
  if (!conn || !conn->c || conn->c->err || conn->broken)
    return false;
  /* Nothing may be waiting to be read between commands: readable means the
   * server closed the connection (or sent what nobody asked for). */
  struct pollfd pfd = {conn->c->fd, POLLIN, 0};
  return pfd.fd >= 0 && poll(&pfd, 1, 0) == 0;
}

static uint64_t redis_round_trips(uow_store_conn *conn) { return conn ? conn->round_trips : 0; }

/* ---- schema and reads ---- */

static int redis_create_table(uow_store_conn *conn, const uow_entity *entity, uow_status *st) {
  (void)conn;
  (void)entity;
  (void)st;
  return UOW_OK; /* hashes need no schema */
}

/* "<table>:<key>" into `key`; UOW_EINVAL for a key that is neither an integer nor text. */
static int object_key(const char *table, const uow_value *id, uow_buf *key) {
  uow__buf_puts(key, table);
  uow__buf_puts(key, ":");
  if (id->is_null)
    return UOW_EINVAL;
  if (id->type == UOW_INT64)
    uow__buf_printf(key, "%" PRId64, id->v.i);
  else if (id->type == UOW_TEXT)
    uow__buf_append(key, id->v.bytes.data, id->v.bytes.size);
  else
    return UOW_EINVAL;
  return uow__buf_status(key);
}

/* Convert one field's text (NUL-terminated by hiredis) by the column's type. */
static bool parse_field(const uow_column *col, const redisReply *text, uow_value *out) {
  const char *s = text->str;
  char *end = NULL;
  out->type = col->type;
  out->is_null = false;
  switch (col->type) {
  case UOW_INT64:
    errno = 0;
    out->v.i = strtoll(s, &end, 10);
    return text->len > 0 && errno == 0 && end == s + text->len;
  case UOW_DOUBLE:
    out->v.d = strtod(s, &end);
    return text->len > 0 && end == s + text->len;
  case UOW_BOOL:
    out->v.b = text->len == 1 && s[0] == '1';
    return text->len == 1 && (s[0] == '0' || s[0] == '1');
  case UOW_TEXT:
  case UOW_BLOB:
    out->v.bytes.data = s;
    out->v.bytes.size = text->len;
    return true;
  }
  return false;
}

/* Turn an HGETALL reply into a row and hand it to `fn`, unless it is no object. */
static int deliver_row(uow_store_conn *conn, const uow_entity *entity, const uow_buf *key,
                       const redisReply *reply, uow_row_fn fn, void *ctx, uow_status *st) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2)
    return fail(conn->drv, st, UOW_EIO, "HGETALL %.*s: unexpected reply", (int)key->len, key->data);
  uow_value row[MAX_COLUMNS];
  for (size_t i = 0; i < entity->ncolumns; i++) {
    memset(&row[i], 0, sizeof(row[i]));
    row[i].type = entity->columns[i].type;
    row[i].is_null = true;
  }
  /* Every element is checked first: a malformed reply is an error wherever
   * the tombstone field is in it. */
  bool tombstone = false;
  for (size_t f = 0; f < reply->elements; f++) {
    const redisReply *item = reply->element[f];
    if (item->type != REDIS_REPLY_STRING)
      return fail(conn->drv, st, UOW_EIO, "HGETALL %.*s: unexpected reply", (int)key->len,
                  key->data);
    /* Names are binary: "__deleted\0x" is some other field, not a tombstone. */
    if (f % 2 == 0 && item->len == strlen(DELETED_FIELD) &&
        memcmp(item->str, DELETED_FIELD, item->len) == 0)
      tombstone = true;
  }
  if (tombstone || reply->elements == 0)
    return UOW_OK; /* a tombstone, or no such hash: no row */
  for (size_t f = 0; f < reply->elements; f += 2) {
    const redisReply *name = reply->element[f], *value = reply->element[f + 1];
    for (size_t i = 0; i < entity->ncolumns; i++) {
      const uow_column *col = &entity->columns[i];
      if (strlen(col->name) != name->len || memcmp(col->name, name->str, name->len) != 0)
        continue;
      if (!parse_field(col, value, &row[i]))
        return fail(conn->drv, st, UOW_EIO, "%.*s: field %s holds \"%.40s\", not a %s",
                    (int)key->len, key->data, col->name, value->str,
                    col->type == UOW_INT64    ? "64-bit integer"
                    : col->type == UOW_DOUBLE ? "number"
                                              : "boolean (0 or 1)");
      break;
    }
  }
  return fn(ctx, row);
}

static int redis_read(uow_store_conn *conn, const uow_entity *entity, const char *where,
                      const uow_value *params, size_t nparams, unsigned flags, uow_row_fn fn,
                      void *ctx, uow_status *st) {
  (void)flags; /* nothing to lock: writes come later, version-guarded */
  if (where || nparams != 1 || !params)
    return fail(conn->drv, st, UOW_EINVAL, "the Redis store reads by primary key only");
  if (entity->ncolumns > MAX_COLUMNS)
    return fail(conn->drv, st, UOW_EINVAL, "%s has more than %d columns", entity->name,
                MAX_COLUMNS);
  if (conn->broken || conn->c->err)
    return fail(conn->drv, st, UOW_EIO, "the connection failed earlier: %s", errstr(conn->c));
  uow_buf key;
  uow__buf_init(&key);
  int rc = object_key(entity->table, &params[0], &key);
  if (rc) {
    uow__buf_free(&key);
    return rc == UOW_ENOMEM ? fail(conn->drv, st, rc, "read %s: out of memory", entity->name)
                            : fail(conn->drv, st, rc, "read %s: the key must be an integer or text",
                                   entity->name);
  }
  const char *argv[2] = {"HGETALL", key.data};
  const size_t lens[2] = {7, key.len};
  uow_sigpipe_guard guard;
  uow__sigpipe_block(&guard);
  redisReply *reply = redisCommandArgv(conn->c, 2, argv, lens);
  uow__sigpipe_restore(&guard);
  conn->round_trips++;
  if (!reply)
    rc = fail(conn->drv, st, UOW_EIO, "HGETALL %.*s: %s", (int)key.len, key.data, errstr(conn->c));
  else if (reply->type == REDIS_REPLY_ERROR)
    rc = fail(conn->drv, st, UOW_EIO, "HGETALL %.*s refused: %s", (int)key.len, key.data,
              reply->str ? reply->str : "");
  else
    rc = deliver_row(conn, entity, &key, reply, fn, ctx, st);
  if (reply)
    freeReplyObject(reply);
  uow__buf_free(&key);
  return rc;
}

static int redis_write(uow_store_conn *conn, uow_write *writes, size_t n, bool commit,
                       uow_status *st) {
  (void)writes;
  (void)n;
  (void)commit;
  return fail(conn->drv, st, UOW_EMISUSE,
              "the Redis store cannot join a transaction: its objects are written after the "
              "commit, as intents (apply), never with write");
}

/* ---- applying intents ---- */

/* Load the script on this connection (one round trip) and keep its SHA1. */
static int load_script(uow_store_conn *conn, uow_status *st) {
  const char *argv[3] = {"SCRIPT", "LOAD", apply_script};
  const size_t lens[3] = {6, 4, sizeof(apply_script) - 1};
  redisReply *reply = redisCommandArgv(conn->c, 3, argv, lens);
  conn->round_trips++;
  if (!reply)
    return fail(conn->drv, st, UOW_EIO, "SCRIPT LOAD: %s", errstr(conn->c));
  int rc = UOW_OK;
  if (reply->type == REDIS_REPLY_STRING && reply->len == 40)
    memcpy(conn->sha, reply->str, 41);
  else
    rc = fail(conn->drv, st, UOW_EIO, "SCRIPT LOAD refused: %s",
              reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "unexpected reply");
  freeReplyObject(reply);
  return rc;
}

/* Why an intent cannot be sent, or NULL when it can. */
static const char *intent_problem(const uow_intent *in) {
  if (!in->table || !in->key)
    return "no table or key";
  if (in->version < 0)
    return "a negative version";
  if (in->del && in->nfields)
    return "a delete with fields";
  for (size_t i = 0; i < in->nfields; i++) {
    const char *name = in->fields[i].name;
    if (!name)
      return "a field without a name";
    if (strcmp(name, VERSION_FIELD) == 0 || strcmp(name, DELETED_FIELD) == 0)
      return "a field named " VERSION_FIELD " or " DELETED_FIELD " (reserved)";
  }
  return NULL;
}

/* Append the EVALSHA of one intent to the connection's output buffer. */
static int append_intent(uow_store_conn *conn, const uow_intent *in, const char **argv,
                         size_t *lens, uow_buf *key) {
  char version[24];
  int version_len = snprintf(version, sizeof(version), "%" PRId64, in->version);
  uow__buf_reset(key);
  uow__buf_printf(key, "%s:%s", in->table, in->key);
  if (uow__buf_status(key))
    return UOW_ENOMEM;
  int argc = 0;
#define ARG(ptr, len) (argv[argc] = (ptr), lens[argc++] = (len))
  ARG("EVALSHA", 7);
  ARG(conn->sha, 40);
  ARG("1", 1);
  ARG(key->data, key->len);
  ARG(version, (size_t)version_len);
  ARG(in->del ? "del" : "put", 3);
  for (size_t i = 0; !in->del && i < in->nfields; i++) {
    const uow_intent_field *f = &in->fields[i];
    if (!f->value)
      continue; /* NULL: the field is left out */
    ARG(f->name, strlen(f->name));
    ARG(f->len ? (const char *)f->value : "", f->len);
  }
#undef ARG
  return redisAppendCommandArgv(conn->c, argc, argv, lens) == REDIS_OK ? UOW_OK : UOW_ENOMEM;
}

/*
 * Send `n` intents pipelined and read every reply (to keep the connection in
 * step). `*ok` gets how many leading ones succeeded, `*noscript` whether the
 * first failure was NOSCRIPT (then the caller loads the script again and
 * sends from there). The caller holds the SIGPIPE guard.
 */
static int send_batch(uow_store_conn *conn, const uow_intent *intents, size_t n, const char **argv,
                      size_t *lens, size_t *ok, bool *noscript, uow_status *st) {
  *ok = 0;
  *noscript = false;
  uow_buf key;
  uow__buf_init(&key);
  int rc = UOW_OK;
  for (size_t i = 0; i < n && !rc; i++)
    rc = append_intent(conn, &intents[i], argv, lens, &key);
  if (rc) {
    /* Nothing was sent (hiredis writes in redisGetReply), but the output
     * buffer holds part of a batch: this connection must not be used again. */
    conn->broken = true;
    uow__buf_free(&key);
    return fail(conn->drv, st, UOW_ENOMEM, "apply: out of memory building the batch");
  }
  conn->round_trips++;
  bool refused = false;
  for (size_t i = 0; i < n; i++) {
    void *r = NULL;
    if (redisGetReply(conn->c, &r) != REDIS_OK || !r) {
      conn->broken = true;
      rc = fail(conn->drv, st, UOW_EIO, "apply: connection lost with %zu of %zu replies read: %s",
                i, n, errstr(conn->c));
      break;
    }
    redisReply *reply = r;
    bool good = reply->type == REDIS_REPLY_INTEGER && (reply->integer == 0 || reply->integer == 1);
    if (good && !refused && *ok == i) {
      (*ok)++;
    } else if (!good && !refused && *ok == i) {
      refused = true;
      const char *why =
          reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "unexpected reply";
      if (strncmp(why, "NOSCRIPT", 8) == 0)
        *noscript = true;
      else
        rc = fail(conn->drv, st, UOW_EIO, "apply %s:%s (version %" PRId64 ") refused: %s",
                  intents[i].table, intents[i].key, intents[i].version, why);
    }
    freeReplyObject(reply);
  }
  uow__buf_free(&key);
  return rc;
}

static int redis_apply(uow_store_conn *conn, const uow_intent *intents, size_t n, size_t *applied,
                       uow_status *st) {
  if (applied)
    *applied = 0;
  if (!conn || !applied || (n && !intents))
    return uow_status_set(st, UOW_EINVAL, "apply: NULL argument");
  if (conn->broken || conn->c->err)
    return fail(conn->drv, st, UOW_EIO, "the connection failed earlier: %s", errstr(conn->c));
  /* Intents that cannot be sent stop the batch; those before them still go. */
  size_t sendable = 0, most_args = 0;
  const char *problem = NULL;
  for (; sendable < n && !(problem = intent_problem(&intents[sendable])); sendable++)
    if (intents[sendable].nfields > most_args)
      most_args = intents[sendable].nfields;
  const char **argv = uow__malloc((6 + 2 * most_args) * sizeof(*argv));
  size_t *lens = uow__malloc((6 + 2 * most_args) * sizeof(*lens));
  int rc = argv && lens ? UOW_OK : fail(conn->drv, st, UOW_ENOMEM, "apply: out of memory");
  uow_sigpipe_guard guard;
  uow__sigpipe_block(&guard);
  /* Twice at most: a NOSCRIPT (SCRIPT FLUSH, a restarted server) loads it again. */
  for (int attempt = 0; !rc && *applied < sendable && attempt < 2; attempt++) {
    size_t ok = 0;
    bool noscript = false;
    if (!conn->sha[0] && (rc = load_script(conn, st)))
      break;
    rc = send_batch(conn, intents + *applied, sendable - *applied, argv, lens, &ok, &noscript, st);
    *applied += ok;
    if (noscript)
      conn->sha[0] = '\0';
  }
  uow__sigpipe_restore(&guard);
  uow__free(argv);
  uow__free(lens);
  if (!rc && *applied < sendable)
    rc = fail(conn->drv, st, UOW_EIO, "apply: Redis does not keep the script (NOSCRIPT twice)");
  if (!rc && problem)
    rc = fail(conn->drv, st, UOW_EINVAL, "apply: intent %zu (%s:%s) has %s", sendable,
              intents[sendable].table ? intents[sendable].table : "?",
              intents[sendable].key ? intents[sendable].key : "?", problem);
  return rc;
}

extern const uow_store_ops uow__redis_store;

const uow_store_ops uow__redis_store = {
    .abi = UOW_STORE_ABI,
    .scheme = "redis",
    .alias = "redis+unix",
    .caps = UOW_STORE_INTENTS,
    .open = redis_open,
    .close = redis_close,
    .max_connections = redis_max_connections,
    .connect = redis_connect,
    .disconnect = redis_disconnect,
    .healthy = redis_healthy,
    /* No transactions: the core calls these only for UOW_STORE_TRANSACTIONAL stores. */
    .begin = NULL,
    .commit = NULL,
    .rollback = NULL,
    .savepoint = NULL,
    .release = NULL,
    .rollback_to = NULL,
    .prepare = NULL,
    .commit_prepared = NULL,
    .rollback_prepared = NULL,
    .list_prepared = NULL,
    .create_table = redis_create_table,
    .read = redis_read,
    .write = redis_write,
    .exec = NULL,
    .round_trips = redis_round_trips,
    .prepare_ready = NULL,
    .query_int64 = NULL,
    .apply = redis_apply,
};
