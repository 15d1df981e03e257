/*
 * intent.c - writes to stores that cannot join a transaction (Redis).
 *
 * Such a store's objects are tracked like any other, but nothing is sent to
 * it during the unit. At commit each changed object becomes an intent: every
 * field and the object's next version (or a delete at that version). The
 * intents are outbox rows (kind 'intent', topic = the store's name, key =
 * "<table>:<key>") committed with the unit in its SQL store, so they exist
 * exactly when the unit committed. Right after the commit the unit applies
 * them; if that fails (the store is away, the process dies), the relay
 * applies them later. The store applies an intent only over an older
 * version, so applying twice, or late and out of order, never moves an
 * object backwards.
 *
 * The payload of an intent row (all integers big-endian):
 *   "UOI1" | u8 del | i64 version | u16 len, table | u16 len, key |
 *   u16 nfields | nfields x (u16 len, name | u32 len or 0xffffffff for NULL, value)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

#define MAGIC "UOI1"
#define NULL_LEN 0xffffffffu

/* ---- values as text ---- */

/* The text of a column's value in the unit's arena; NULL data for SQL NULL. */
static int field_text(uow_arena *arena, const uow_value *v, uow_intent_field *out) {
  char buf[64];
  const void *data = NULL;
  size_t len = 0;
  if (!v->is_null) {
    switch (v->type) {
    case UOW_INT64:
      len = (size_t)snprintf(buf, sizeof(buf), "%" PRId64, v->v.i);
      data = buf;
      break;
    case UOW_DOUBLE:
      len = (size_t)snprintf(buf, sizeof(buf), "%.17g", v->v.d);
      data = buf;
      break;
    case UOW_BOOL:
      len = 1;
      data = v->v.b ? "1" : "0";
      break;
    case UOW_TEXT:
    case UOW_BLOB:
      len = v->v.bytes.size;
      data = v->v.bytes.data ? v->v.bytes.data : "";
      break;
    }
  }
  out->len = len;
  out->value = data ? uow__arena_dup(arena, data, len + 1) : NULL;
  return data && !out->value ? UOW_ENOMEM : UOW_OK;
}

/* ---- building intents at commit ---- */

int uow__intent_build(uow_unit *unit, uow_record *rec, bool del, int64_t version, uow_intent *out) {
  const uow_entity *e = rec->map->entity;
  const void *object = del ? rec->snapshot : uow__record_object(rec);
  memset(out, 0, sizeof(*out));
  out->table = e->table;
  out->version = version;
  out->del = del;
  uow_intent_field key;
  uow_value kv;
  uow__column_read(&e->columns[rec->map->key], object, &kv);
  if (field_text(&unit->arena, &kv, &key) || !key.value)
    return UOW_ENOMEM;
  out->key = key.value;
  if (del)
    return UOW_OK;
  uow_intent_field *fields = uow__arena_alloc(&unit->arena, e->ncolumns * sizeof(*fields));
  if (!fields)
    return UOW_ENOMEM;
  for (size_t i = 0; i < e->ncolumns; i++) {
    uow_value v;
    uow__column_read(&e->columns[i], object, &v);
    if (i == rec->map->version) {
      v.is_null = false;
      v.v.i = version;
    }
    fields[i].name = e->columns[i].name;
    if (field_text(&unit->arena, &v, &fields[i]))
      return UOW_ENOMEM;
  }
  out->fields = fields;
  out->nfields = e->ncolumns;
  return UOW_OK;
}

/* ---- the outbox payload ---- */

static void put_u16(uow_buf *b, size_t v) {
  unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  uow__buf_append(b, x, 2);
}

static void put_u32(uow_buf *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  uow__buf_append(b, x, 4);
}

static void put_text16(uow_buf *b, const char *s, size_t len) {
  put_u16(b, len);
  uow__buf_append(b, s, len);
}

int uow__intent_encode(const uow_intent *in, uow_buf *out) {
  uow__buf_reset(out);
  size_t tlen = strlen(in->table), klen = strlen(in->key);
  if (tlen > 0xffff || klen > 0xffff || in->nfields > 0xffff)
    return UOW_EINVAL;
  uow__buf_append(out, MAGIC, 4);
  unsigned char del = in->del;
  uow__buf_append(out, &del, 1);
  uint64_t v = (uint64_t)in->version;
  put_u32(out, (uint32_t)(v >> 32));
  put_u32(out, (uint32_t)v);
  put_text16(out, in->table, tlen);
  put_text16(out, in->key, klen);
  put_u16(out, in->nfields);
  for (size_t i = 0; i < in->nfields; i++) {
    const uow_intent_field *f = &in->fields[i];
    size_t nlen = strlen(f->name);
    if (nlen > 0xffff || (f->value && f->len >= NULL_LEN))
      return UOW_EINVAL;
    put_text16(out, f->name, nlen);
    put_u32(out, f->value ? (uint32_t)f->len : NULL_LEN);
    if (f->value)
      uow__buf_append(out, f->value, f->len);
  }
  return uow__buf_status(out);
}

typedef struct reader {
  const unsigned char *p;
  size_t left;
  bool bad;
} reader;

static uint64_t get_n(reader *r, size_t n) {
  uint64_t v = 0;
  if (r->bad || r->left < n) {
    r->bad = true;
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    v = v << 8 | r->p[i];
  r->p += n;
  r->left -= n;
  return v;
}

/* `len` bytes as a NUL-terminated copy in the arena. */
static const char *get_bytes(reader *r, uow_arena *arena, size_t len) {
  if (r->bad || r->left < len) {
    r->bad = true;
    return NULL;
  }
  char *s = uow__arena_strndup(arena, (const char *)r->p, len);
  r->p += len;
  r->left -= len;
  r->bad = !s;
  return s;
}

int uow__intent_decode(const void *data, size_t len, uow_arena *arena, uow_intent *out) {
  reader r = {data, len, false};
  memset(out, 0, sizeof(*out));
  if (!data || len < 4 || memcmp(data, MAGIC, 4) != 0)
    return UOW_EINVAL;
  r.p += 4;
  r.left -= 4;
  uint64_t del = get_n(&r, 1);
  out->version = (int64_t)get_n(&r, 8);
  out->del = del != 0;
  out->table = get_bytes(&r, arena, (size_t)get_n(&r, 2));
  out->key = get_bytes(&r, arena, (size_t)get_n(&r, 2));
  size_t n = (size_t)get_n(&r, 2);
  uow_intent_field *fields = n ? uow__arena_alloc(arena, n * sizeof(*fields)) : NULL;
  if (r.bad || del > 1 || (n && !fields) || (out->del && n))
    return r.bad || del > 1 || (out->del && n) ? UOW_EINVAL : UOW_ENOMEM;
  for (size_t i = 0; i < n && !r.bad; i++) {
    fields[i].name = get_bytes(&r, arena, (size_t)get_n(&r, 2));
    uint64_t vlen = get_n(&r, 4);
    if (vlen != NULL_LEN) {
      fields[i].value = get_bytes(&r, arena, (size_t)vlen);
      fields[i].len = (size_t)vlen;
    }
  }
  if (r.bad || r.left)
    return UOW_EINVAL;
  out->fields = fields;
  out->nfields = n;
  return UOW_OK;
}

/* ---- applying ---- */

/* Apply `n` intents to `store` on a pooled connection: one call, one round trip. */
static int apply_to(uow_store *store, const uow_intent *intents, size_t n, size_t *applied,
                    uow_status *st) {
  uow_store_conn *conn = NULL;
  bool reused;
  *applied = 0;
  int rc = uow__pool_acquire(store, &conn, &reused, st);
  if (!rc)
    rc = store->ops->apply(conn, intents, n, applied, st);
  uow__pool_release(store, conn, rc == UOW_OK);
  return rc;
}

void uow__intents_apply(uow_unit *unit, uow_store *outbox) {
  if (!unit->intents.len)
    return;
  uow__crash_point("before_intents_apply", 0);
  bool all = true;
  for (size_t i = 0; i < unit->intents.len;) {
    uow_pending_intent *first = &UOW_VEC_AT(&unit->intents, uow_pending_intent, i);
    size_t n = 1;
    while (i + n < unit->intents.len &&
           UOW_VEC_AT(&unit->intents, uow_pending_intent, i + n).store == first->store)
      n++;
    /* The intents of one store, consecutive: one call. */
    uow_intent *batch = uow__arena_alloc(&unit->arena, n * sizeof(*batch));
    uow_status st = {0, ""};
    size_t applied = 0;
    for (size_t j = 0; batch && j < n; j++)
      batch[j] = UOW_VEC_AT(&unit->intents, uow_pending_intent, i + j).intent;
    int rc = batch ? apply_to(first->store, batch, n, &applied, &st) : UOW_ENOMEM;
    all = all && rc == UOW_OK && applied == n;
    i += n;
  }
  if (!all)
    return; /* the relay applies them */
  uow_store_conn *conn = NULL;
  bool reused;
  uow_status st = {0, ""};
  uow_value params[2] = {uow_int64(uow__now_ms()), uow_text(unit->id)};
  int rc = uow__pool_acquire(outbox, &conn, &reused, &st);
  if (!rc)
    rc = outbox->ops->exec(conn,
                           "UPDATE uow_outbox SET state = 1, attempts = attempts + 1, "
                           "delivered_at = ? WHERE unit_id = ? AND kind = 'intent'",
                           params, 2, NULL, &st);
  uow__pool_release(outbox, conn, rc == UOW_OK); /* if it failed, the relay applies them again */
}

/* ---- the relay's sink for intents ---- */

static int apply_deliveries(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                            char *err, size_t errcap) {
  uow_env *env = ctx;
  uow_arena arena;
  uow__arena_init(&arena);
  size_t done = 0;
  int rc = UOW_OK;
  while (done < n && !rc) {
    /* The consecutive intents of one store go in one call. */
    uow_store *store = uow__env_store(env, events[done].topic);
    if (!store || !(store->ops->caps & UOW_STORE_INTENTS) || !store->ops->apply) {
      snprintf(err, errcap, "intent %s is for store '%s', which this environment does not have",
               events[done].event_id, events[done].topic);
      rc = UOW_EINVAL;
      break;
    }
    size_t count = 0;
    while (done + count < n && strcmp(events[done + count].topic, events[done].topic) == 0)
      count++;
    uow_intent *batch = uow__arena_alloc(&arena, count * sizeof(*batch));
    if (!batch) {
      rc = UOW_ENOMEM;
      break;
    }
    for (size_t j = 0; j < count && !rc; j++) {
      const uow_delivery *d = &events[done + j];
      rc = uow__intent_decode(d->payload, d->payload_len, &arena, &batch[j]);
      if (rc) {
        snprintf(err, errcap, "intent %s cannot be read (%s)", d->event_id, uow_strerror(rc));
        count = j; /* apply those before it */
      }
    }
    uow_status st = {0, ""};
    size_t applied = 0;
    int arc = count ? apply_to(store, batch, count, &applied, &st) : UOW_OK;
    done += applied;
    if (arc && !rc) {
      snprintf(err, errcap, "store '%s': %s", store->name, st.message);
      rc = arc;
    } else if (!rc && applied < count) {
      snprintf(err, errcap, "store '%s' refused an intent", store->name);
      rc = UOW_EIO;
    }
  }
  uow__arena_free(&arena);
  *delivered = done;
  return rc;
}

void uow__intent_sink(uow_env *env, uow_sink *out) {
  memset(out, 0, sizeof(*out));
  out->version = UOW_SINK_VERSION;
  out->name = "intents";
  out->deliver = apply_deliveries;
  out->ctx = env;
}
