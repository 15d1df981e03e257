/*
 * redis_stream.c - the Redis Streams sink (uow_sink_redis_stream): each
 * event of a batch becomes one XADD to one stream, all of a batch pipelined
 * (appended, sent at once, then the replies read in order), over hiredis.
 *
 * URLs (redis://host:port/db, redis+unix:///path?db=N, with optional
 * [user]:password@) are parsed strictly by redis_url.c. A password is sent
 * with AUTH (AUTH user password when a user is given) and never written in a
 * message: messages name the server by a label with "***" for the password,
 * and any text quoted from Redis or hiredis has the password masked too.
 *
 * Entries: XADD stream * event_id E topic T [key K] payload P unit_id U
 * created_at MS, every value binary-safe. The key field is omitted when the
 * event's key is NULL, so a consumer can tell NULL from an empty key.
 *
 * Connections: none when the sink is made. deliver() connects when it has no
 * connection (2 s to connect, 2 s for each read or write), sends AUTH and
 * SELECT when needed, and drops the connection on any connection error, so
 * the next call connects again. Replies are all read even after an error
 * reply, to keep the connection in step; *delivered counts the leading XADDs
 * Redis accepted. The events after a refused one may have been appended too;
 * they are delivered again later (at least once).
 *
 * hiredis writes with plain write(), so the batch runs under the SIGPIPE guard
 * of sink.h. hiredis allocates with its own allocator; everything of ours goes
 * through uow__malloc & co.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "sinks/redis_url.h"
#include "sinks/sink.h"

/** Connect, read and write timeout. */
#define REDIS_TIMEOUT_SECONDS 2

typedef struct redis_sink {
  uow_redis_url url;
  char *stream;
  size_t stream_len;
  char label[512]; /* the URL for messages, password masked */
  redisContext *conn;
} redis_sink;

/* ---- messages ---- */

/**
 * Write "redis-stream LABEL: <fmt>" into `err` with every occurrence of the
 * password replaced by "***" (Redis and hiredis texts are quoted in messages
 * and must not be trusted to leave it out). Returns `code`.
 */
UOW_PRINTF(5, 6)
static int redis_fail(const redis_sink *sink, char *err, size_t errcap, int code, const char *fmt,
                      ...) {
  if (!err || !errcap)
    return code;
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  const char *secret = sink->url.password;
  size_t secret_len = secret ? strlen(secret) : 0;
  uow_buf out;
  uow__buf_init(&out);
  uow__buf_printf(&out, "redis-stream %s: ", sink->label);
  for (const char *p = text; *p;) {
    const char *hit = secret_len ? strstr(p, secret) : NULL;
    if (!hit) {
      uow__buf_puts(&out, p);
      break;
    }
    uow__buf_append(&out, p, (size_t)(hit - p));
    uow__buf_puts(&out, "***");
    p = hit + secret_len;
  }
  if (uow__buf_status(&out) == 0) {
    snprintf(err, errcap, "%.*s", (int)out.len, out.data);
  } else {
    /* No memory to build it: say so without quoting anything. */
    snprintf(err, errcap, "redis-stream %s: out of memory while reporting an error", sink->label);
  }
  uow__buf_free(&out);
  return code;
}

/* ---- connection ---- */

static void drop_connection(redis_sink *sink) {
  if (sink->conn) {
    redisFree(sink->conn);
    sink->conn = NULL;
  }
}

/** Run one command while setting up a connection; UOW_EIO when it fails or Redis refuses it. */
static int setup_command(redis_sink *sink, redisContext *c, int argc, const char **argv,
                         const size_t *lens, char *err, size_t errcap) {
  redisReply *reply = redisCommandArgv(c, argc, argv, lens);
  if (!reply)
    return redis_fail(sink, err, errcap, UOW_EIO, "%s: %s", argv[0],
                      c->errstr[0] ? c->errstr : "no reply");
  int rc = 0;
  if (reply->type == REDIS_REPLY_ERROR)
    rc = redis_fail(sink, err, errcap, UOW_EIO, "%s refused: %s", argv[0],
                    reply->str ? reply->str : "");
  freeReplyObject(reply);
  return rc;
}

static int redis_connect(redis_sink *sink, char *err, size_t errcap) {
  const struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};
  redisContext *c = sink->url.unix_socket
                        ? redisConnectUnixWithTimeout(sink->url.path, timeout)
                        : redisConnectWithTimeout(sink->url.host, sink->url.port, timeout);
  if (!c)
    return redis_fail(sink, err, errcap, UOW_ENOMEM, "cannot connect: out of memory");
  int rc = 0;
  if (c->err) {
    rc = redis_fail(sink, err, errcap, UOW_EIO, "cannot connect: %s", c->errstr);
    goto done;
  }
  if (redisSetTimeout(c, timeout) != REDIS_OK) {
    rc = redis_fail(sink, err, errcap, UOW_EIO, "cannot set timeouts: %s", strerror(errno));
    goto done;
  }
  if (sink->url.password) {
    const char *argv[3] = {"AUTH", sink->url.user, sink->url.password};
    size_t lens[3] = {4, sink->url.user ? strlen(sink->url.user) : 0, strlen(sink->url.password)};
    if (!sink->url.user) {
      argv[1] = sink->url.password;
      lens[1] = lens[2];
    }
    if ((rc = setup_command(sink, c, sink->url.user ? 3 : 2, argv, lens, err, errcap)))
      goto done;
  }
  if (sink->url.db) {
    char db[16];
    int len = snprintf(db, sizeof(db), "%d", sink->url.db);
    const char *argv[2] = {"SELECT", db};
    const size_t lens[2] = {6, (size_t)len};
    if ((rc = setup_command(sink, c, 2, argv, lens, err, errcap)))
      goto done;
  }
done:
  if (rc)
    redisFree(c);
  else
    sink->conn = c;
  return rc;
}

/* ---- delivery ---- */

static const char *text_or_empty(const char *s) { return s ? s : ""; }

/** Append the XADD of one event to the connection's output buffer. */
static int append_xadd(redis_sink *sink, const uow_delivery *ev) {
  char created_at[24];
  int created_len = snprintf(created_at, sizeof(created_at), "%" PRId64, ev->created_at);
  const char *argv[15];
  size_t lens[15];
  int argc = 0;
#define ARG(ptr, len) (argv[argc] = (ptr), lens[argc++] = (len))
#define TEXT(s) ARG(text_or_empty(s), strlen(text_or_empty(s)))
  ARG("XADD", 4);
  ARG(sink->stream, sink->stream_len);
  ARG("*", 1);
  ARG("event_id", 8);
  TEXT(ev->event_id);
  ARG("topic", 5);
  TEXT(ev->topic);
  if (ev->key) {
    ARG("key", 3);
    TEXT(ev->key);
  }
  ARG("payload", 7);
  ARG(ev->payload_len ? (const char *)ev->payload : "", ev->payload_len);
  ARG("unit_id", 7);
  TEXT(ev->unit_id);
  ARG("created_at", 10);
  ARG(created_at, (size_t)created_len);
#undef TEXT
#undef ARG
  return redisAppendCommandArgv(sink->conn, argc, argv, lens) == REDIS_OK ? 0 : UOW_ENOMEM;
}

/** Send the batch, read every reply. The caller holds the SIGPIPE guard. */
static int deliver_batch(redis_sink *sink, const uow_delivery *events, size_t n, size_t *delivered,
                         char *err, size_t errcap) {
  int rc;
  if (!sink->conn && (rc = redis_connect(sink, err, errcap)))
    return rc;
  for (size_t i = 0; i < n; i++) {
    if (append_xadd(sink, &events[i])) {
      /* Nothing was sent yet (hiredis writes in redisGetReply), but the
       * output buffer holds part of a batch: start over with a new connection. */
      drop_connection(sink);
      return redis_fail(sink, err, errcap, UOW_ENOMEM, "out of memory building the batch");
    }
  }
  size_t accepted = 0; /* leading XADDs Redis accepted: only while accepted == i */
  char refusal[256] = "";
  for (size_t i = 0; i < n; i++) {
    void *r = NULL;
    if (redisGetReply(sink->conn, &r) != REDIS_OK || !r) {
      char why[128];
      snprintf(why, sizeof(why), "%s", sink->conn->errstr[0] ? sink->conn->errstr : "no reply");
      drop_connection(sink);
      *delivered = accepted;
      return redis_fail(sink, err, errcap, UOW_EIO,
                        "connection lost with %zu of %zu replies read: %s", i, n, why);
    }
    redisReply *reply = r;
    if (reply->type == REDIS_REPLY_STRING) {
      if (accepted == i)
        accepted++;
    } else if (!refusal[0]) {
      snprintf(refusal, sizeof(refusal), "XADD of event %s refused: %s",
               text_or_empty(events[i].event_id),
               reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str
                                                              : "unexpected reply type");
    }
    freeReplyObject(reply);
  }
  *delivered = accepted;
  if (accepted < n)
    return redis_fail(sink, err, errcap, UOW_EIO, "%s", refusal);
  return 0;
}

static int redis_deliver(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                         char *err, size_t errcap) {
  redis_sink *sink = ctx;
  if (delivered)
    *delivered = 0;
  if (!sink || !delivered || (n && !events))
    return uow__sink_fail(err, errcap, UOW_EINVAL, "redis-stream: NULL argument");
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!events[i].payload && events[i].payload_len)
      return redis_fail(sink, err, errcap, UOW_EINVAL, "event %zu has a NULL payload of %zu bytes",
                        i, events[i].payload_len);
  uow_sigpipe_guard guard;
  uow__sigpipe_block(&guard);
  int rc = deliver_batch(sink, events, n, delivered, err, errcap);
  uow__sigpipe_restore(&guard);
  return rc;
}

static void redis_destroy(void *ctx) {
  redis_sink *sink = ctx;
  if (!sink)
    return;
  drop_connection(sink);
  uow__redis_url_free(&sink->url);
  uow__free(sink->stream);
  uow__free(sink);
}

int uow_sink_redis_stream(const char *url, const char *stream, uow_sink *out) {
  if (!out)
    return UOW_EINVAL;
  memset(out, 0, sizeof(*out));
  if (!url || !stream || !stream[0])
    return UOW_EINVAL;
  redis_sink *sink = uow__calloc(1, sizeof(*sink));
  if (!sink)
    return UOW_ENOMEM;
  int rc = uow__redis_url_parse(url, &sink->url);
  if (!rc) {
    sink->stream_len = strlen(stream);
    sink->stream = uow__strndup(stream, sink->stream_len);
    if (!sink->stream)
      rc = UOW_ENOMEM;
  }
  if (rc) {
    redis_destroy(sink);
    return rc;
  }
  uow__redis_url_label(&sink->url, sink->label, sizeof(sink->label));
  out->version = UOW_SINK_VERSION;
  out->name = "redis-stream";
  out->deliver = redis_deliver;
  out->destroy = redis_destroy;
  out->ctx = sink;
  return 0;
}
