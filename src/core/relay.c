/*
 * relay.c - delivering the outbox: claim pending events, hand them to a sink,
 * mark what the sink took, back off what it did not.
 *
 * A pass over one store:
 *   - claim: the pending events that are due, oldest first, skipping any
 *     whose key has an earlier pending event (that one goes first: order per
 *     key), unless that one goes in the same batch: a burst of one key goes
 *     in one pass, in order. A store that can lock rows (PostgreSQL) claims
 *     inside a transaction, first the heads (the first pending event of
 *     their key) with FOR UPDATE SKIP LOCKED, then the due rows behind them
 *     in their keys with FOR UPDATE, delivers, and marks the rows in that
 *     same transaction, so relays share the work and never hand the same
 *     event out twice at once, nor one key's events to two relays. SQLite
 *     has one writer anyway: there a relay first takes the store's lease
 *     (uow_relay_lease), then claims (heads and the rows behind them in one
 *     query), delivers and marks in short transactions.
 *   - deliver: one call to the sink with the whole batch, in order.
 *   - mark: the events the sink took are delivered; the first one it did not
 *     take counts a failed attempt (retried after an exponential backoff with
 *     jitter, or dead after max_attempts); those after it stay pending as
 *     they were.
 *   - purge: delivered events older than the retention period are deleted.
 * Nothing remembers a position, so an event whose unit committed late is
 * simply found by a later pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

enum { DEFAULT_BATCH = 100, MAX_BATCH = 1000, DEFAULT_ATTEMPTS = 10 };
#define DEFAULT_BACKOFF_MS 500
#define DEFAULT_BACKOFF_MAX_MS 60000
#define DEFAULT_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define DEFAULT_LEASE_MS 30000
#define DEFAULT_POLL_MS 200
/* Delivered events are purged at most this often (or once per retention
 * period, when shorter): they go 7 days after delivery by default, and the
 * purge reads every delivered row the outbox keeps. Each pass did it before,
 * which cost more than the pass's own work once tens of thousands of rows
 * were kept. */
#define PURGE_EVERY_MS 60000

/* Column positions in uow__outbox_entity. */
enum { C_ID, C_UNIT, C_SEQ, C_KIND, C_TOPIC, C_KEY, C_PAYLOAD, C_CREATED, C_STATE, C_ATTEMPTS };

/* Pending rows of a kind that are due. `?`: the kind, now. */
#define DUE "state = 0 AND kind = ? AND next_attempt_at <= ?"

/* A pending row of the same key before this one waits: it is of another
 * kind, or not due. `?`: now. */
#define WAITS_BEFORE                                                                               \
  "EXISTS (SELECT 1 FROM uow_outbox e WHERE e.event_key = uow_outbox.event_key AND "               \
  "e.state = 0 AND e.id < uow_outbox.id AND (e.kind <> uow_outbox.kind OR e.next_attempt_at > ?))"

/* The heads: due rows first of their key (PostgreSQL, with SKIP LOCKED: a
 * head another relay holds is skipped, and with it its key). */
#define HEADS                                                                                      \
  DUE " AND (event_key IS NULL OR NOT EXISTS (SELECT 1 FROM uow_outbox e WHERE "                   \
      "e.event_key = uow_outbox.event_key AND e.state = 0 AND e.id < uow_outbox.id)) "             \
      "ORDER BY id LIMIT %u"

/* The same heads, found key by key (PostgreSQL): the first pending row of
 * each key (a row without a key is its own), when it is due and of the kind.
 * HEADS reads pending rows in id order and probes the key index at each for
 * an earlier row of its key, and stops at the batch: few rows read when the
 * keys are many, the whole backlog when a few keys hold it (100 ms a pass at
 * 20,000 rows over 100 keys). This reads every pending row once, without
 * probes (8 to 20 ms there; 20 to 65 ms at 20,000 rows of distinct keys,
 * where HEADS takes 3): the better plan after a claim that found fewer heads
 * than its batch, since HEADS then read the whole backlog. The heads come as
 * an array, so that the plan stays a lookup of each whatever the planner
 * believes of the table's size (as an IN list, a table not analyzed yet got
 * a nested loop over the pending rows and the heads: 400 ms). `?`: the kind,
 * now. */
#define FIRSTS                                                                                     \
  DUE " AND id = ANY (ARRAY(SELECT min(e.id) FROM uow_outbox e WHERE e.state = 0 "                 \
      "GROUP BY e.event_key, CASE WHEN e.event_key IS NULL THEN e.id END)) ORDER BY id LIMIT %u"

/* The rows behind the heads claimed: due, behind nothing that waits, in the
 * heads' keys and not among them. `?`: the kind, now, now; then the keys and
 * the heads' ids fill the two lists, and the room left in the batch its
 * LIMIT. Only the relay that holds a key's head claims the rows behind it:
 * for any other, the head is the first of the key. */
#define FOLLOWING DUE " AND NOT " WAITS_BEFORE " AND event_key IN ("

/* SQLite, where one relay holds the lease: heads and the rows behind them in
 * one go, since every row before a claimable one of its key is claimable
 * too, and comes first. `?`: the kind, now, now. */
#define CLAIMABLE DUE " AND NOT " WAITS_BEFORE " ORDER BY id LIMIT %u"

typedef struct relay {
  uow_env *env;
  const uow_sink *sink; /* where the current claim goes: events or intents */
  const uow_sink *user; /* the caller's sink, for events */
  uow_sink intents;     /* applies intents to their stores */
  uow_relay_options o;
  uow_relay_stats *stats;
  char holder[96]; /* this relay, in the SQLite lease */
  uint64_t seed;
  /* the current batch */
  uow_arena arena;
  uow_vec events; /* uow_delivery */
  uow_store *store;
} relay;

/* Row locks with SKIP LOCKED: the stores that prepare transactions (PostgreSQL). */
static bool locks_rows(const uow_store *store) {
  return (store->ops->caps & UOW_STORE_PREPARE) != 0;
}

/* ---- claiming ---- */

static const char *text_copy(relay *r, const uow_value *v) {
  if (v->is_null)
    return NULL;
  return uow__arena_strndup(&r->arena, v->v.bytes.data ? v->v.bytes.data : "", v->v.bytes.size);
}

static int take_event(void *ctx, const uow_value *row) {
  relay *r = ctx;
  uow_delivery *d = uow__vec_push(&r->events, sizeof(*d));
  if (!d)
    return UOW_ENOMEM;
  char id[96];
  snprintf(id, sizeof(id), "%s:%lld", r->store->name, (long long)row[C_ID].v.i);
  d->event_id = uow__arena_strndup(&r->arena, id, strlen(id));
  d->store = r->store->name;
  d->id = row[C_ID].v.i;
  d->unit_id = text_copy(r, &row[C_UNIT]);
  d->seq = row[C_SEQ].v.i;
  d->topic = text_copy(r, &row[C_TOPIC]);
  d->key = text_copy(r, &row[C_KEY]);
  d->payload_len = row[C_PAYLOAD].is_null ? 0 : row[C_PAYLOAD].v.bytes.size;
  d->payload = d->payload_len
                   ? uow__arena_dup(&r->arena, row[C_PAYLOAD].v.bytes.data, d->payload_len)
                   : NULL;
  d->created_at = row[C_CREATED].v.i;
  d->attempt = row[C_ATTEMPTS].v.i + 1;
  if (!d->event_id || !d->unit_id || !d->topic || (row[C_KEY].is_null ? false : !d->key) ||
      (d->payload_len && !d->payload))
    return UOW_ENOMEM;
  return UOW_OK;
}

static int by_id(const void *a, const void *b) {
  int64_t x = ((const uow_delivery *)a)->id, y = ((const uow_delivery *)b)->id;
  return (x > y) - (x < y);
}

/* Claim the rows behind the heads in r->events (locking them), up to the
 * batch's room, and put the batch in id order (each key's rows in order).
 * Both lists of the query are padded to a power of two with repeats, so that
 * a relay uses a handful of statement texts, not one per count of heads.
 * This query runs only when the heads leave room in the batch, that is when
 * the relay keeps up (PostgreSQL: one more statement in the pass). */
static int claim_following(relay *r, uow_store_conn *conn, const uow_value *kind_now,
                           uow_status *st) {
  const size_t heads = r->events.len;
  const uow_delivery *head = r->events.items;
  size_t keyed = 0, slots = 1;
  while (keyed < heads && !head[keyed].key)
    keyed++;
  if (keyed == heads)
    return UOW_OK; /* no head has a key: nothing is behind them */
  while (slots < heads)
    slots *= 2;
  const size_t nparams = 3 + 2 * slots + 1;
  uow_value *params = uow__arena_alloc(&r->arena, nparams * sizeof(*params));
  if (!params)
    return uow_status_set(st, UOW_ENOMEM, "out of memory reading the outbox");
  params[0] = kind_now[0];
  params[1] = params[2] = kind_now[1];
  uow_value *keys = params + 3, *ids = keys + slots;
  size_t nkeys = 0;
  for (size_t i = keyed; i < heads; i++)
    if (head[i].key)
      keys[nkeys++] = uow_text(head[i].key);
  for (size_t i = nkeys; i < slots; i++)
    keys[i] = keys[0];
  for (size_t i = 0; i < slots; i++)
    ids[i] = uow_int64(head[i < heads ? i : 0].id);
  params[nparams - 1] = uow_int64((int64_t)(r->o.batch - heads)); /* the room left */
  uow_buf where;
  uow__buf_init(&where);
  uow__buf_puts(&where, FOLLOWING);
  for (size_t i = 0; i < slots; i++)
    uow__buf_puts(&where, i ? ",?" : "?");
  uow__buf_puts(&where, ") AND id NOT IN (");
  for (size_t i = 0; i < slots; i++)
    uow__buf_puts(&where, i ? ",?" : "?");
  /* The room is a parameter too, so that the text stays the same. */
  uow__buf_puts(&where, ") ORDER BY id LIMIT ? FOR UPDATE");
  int rc = uow__buf_status(&where)
               ? uow_status_set(st, UOW_ENOMEM, "out of memory reading the outbox")
               : r->store->ops->read(conn, &uow__outbox_entity, where.data, params, nparams, 0,
                                     take_event, r, st);
  uow__buf_free(&where);
  if (!rc && r->events.len > heads)
    qsort(r->events.items, r->events.len, sizeof(uow_delivery), by_id);
  return rc;
}

/* Claim a batch: with row locks (PostgreSQL) the heads, then the rows behind
 * them; without (SQLite, under the lease) both in one query. */
static int claim(relay *r, uow_store_conn *conn, bool lock, uow_status *st) {
  bool intents = r->sink == &r->intents;
  bool *few = &r->store->few_heads[intents];
  char where[640];
  if (!lock)
    snprintf(where, sizeof(where), CLAIMABLE, r->o.batch);
  else if (__atomic_load_n(few, __ATOMIC_RELAXED))
    snprintf(where, sizeof(where), FIRSTS " FOR UPDATE SKIP LOCKED", r->o.batch);
  else
    snprintf(where, sizeof(where), HEADS " FOR UPDATE SKIP LOCKED", r->o.batch);
  const int64_t now = uow__now_ms();
  const uow_value params[3] = {uow_text(intents ? "intent" : "event"), uow_int64(now),
                               uow_int64(now)};
  int rc = r->store->ops->read(conn, &uow__outbox_entity, where, params, lock ? 2 : 3, 0,
                               take_event, r, st);
  if (!rc && lock)
    __atomic_store_n(few, r->events.len < r->o.batch, __ATOMIC_RELAXED);
  if (!rc && lock && r->events.len && r->events.len < r->o.batch)
    rc = claim_following(r, conn, params, st);
  /* take_event's ENOMEM comes back with no status from the store. */
  if (rc == UOW_ENOMEM && !st->message[0])
    uow_status_set(st, rc, "out of memory reading the outbox");
  return rc;
}

/* ---- marking ---- */

/* UPDATE ... WHERE id IN (the delivered events). */
static int mark_delivered(relay *r, uow_store_conn *conn, size_t n, uow_status *st) {
  uow_buf sql;
  uow__buf_init(&sql);
  uow_value *params = uow__arena_alloc(&r->arena, (n + 1) * sizeof(*params));
  uow__buf_puts(&sql, "UPDATE uow_outbox SET state = 1, attempts = attempts + 1, "
                      "delivered_at = ?, last_error = NULL WHERE id IN (");
  for (size_t i = 0; params && i < n; i++) {
    uow__buf_puts(&sql, i ? ",?" : "?");
    params[i + 1] = uow_int64(UOW_VEC_AT(&r->events, uow_delivery, i).id);
  }
  uow__buf_puts(&sql, ")");
  int rc = params && uow__buf_status(&sql) == UOW_OK
               ? UOW_OK
               : uow_status_set(st, UOW_ENOMEM, "out of memory");
  if (!rc) {
    params[0] = uow_int64(uow__now_ms());
    rc = r->store->ops->exec(conn, sql.data, params, n + 1, NULL, st);
  }
  uow__buf_free(&sql);
  return rc;
}

/* The delivery of `d` failed: retry it later, or set it aside. */
static int mark_failed(relay *r, uow_store_conn *conn, const uow_delivery *d, const char *why,
                       uow_status *st) {
  bool dead = d->attempt >= (int64_t)r->o.max_attempts;
  int64_t backoff = r->o.backoff_ms;
  for (int64_t i = 1; i < d->attempt && backoff < r->o.backoff_max_ms; i++)
    backoff *= 2;
  if (backoff > r->o.backoff_max_ms)
    backoff = r->o.backoff_max_ms;
  uow_value params[4] = {uow_int64(dead ? 2 : 0),
                         uow_int64(uow__now_ms() + uow__jitter(backoff, &r->seed)), uow_text(why),
                         uow_int64(d->id)};
  int rc = r->store->ops->exec(conn,
                               "UPDATE uow_outbox SET state = ?, attempts = attempts + 1, "
                               "next_attempt_at = ?, last_error = ? WHERE id = ?",
                               params, 4, NULL, st);
  if (!rc && dead)
    r->stats->dead++;
  else if (!rc)
    r->stats->retried++;
  return rc;
}

/* Hand the batch to the sink and record the outcome on `conn`. */
static int deliver_and_mark(relay *r, uow_store_conn *conn, uow_status *st) {
  size_t n = r->events.len, taken = 0;
  char why[512] = "";
  int sink_rc = r->sink->deliver(r->sink->ctx, r->events.items, n, &taken, why, sizeof(why));
  if (sink_rc == UOW_OK)
    taken = n;
  if (taken > n)
    taken = n;
  int rc = taken ? mark_delivered(r, conn, taken, st) : UOW_OK;
  if (!rc && taken < n) {
    if (!why[0])
      snprintf(why, sizeof(why), "sink '%s' failed: %s", r->sink->name ? r->sink->name : "?",
               uow_strerror(sink_rc ? sink_rc : UOW_EIO));
    rc = mark_failed(r, conn, &UOW_VEC_AT(&r->events, uow_delivery, taken), why, st);
  }
  if (!rc)
    r->stats->delivered += taken;
  return rc;
}

/* ---- one store ---- */

static int claim_locked(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  relay *r = ctx;
  (void)store; /* the same as r->store */
  int rc = claim(r, conn, true, st);
  if (!rc && r->events.len)
    rc = deliver_and_mark(r, conn, st);
  return rc;
}

static int claim_unlocked(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  relay *r = ctx;
  (void)store; /* the same as r->store */
  return claim(r, conn, false, st);
}

static int mark_only(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  relay *r = ctx;
  (void)store; /* the same as r->store */
  return deliver_and_mark(r, conn, st);
}

typedef struct lease_check {
  relay *r;
  bool other; /* another relay holds a live lease */
} lease_check;

static int see_lease(void *ctx, const uow_value *row) {
  lease_check *lc = ctx;
  bool mine = row[1].v.bytes.size == strlen(lc->r->holder) &&
              memcmp(row[1].v.bytes.data, lc->r->holder, row[1].v.bytes.size) == 0;
  lc->other = !mine && row[2].v.i > uow__now_ms();
  return UOW_OK;
}

/* Take or renew the SQLite store's lease; UOW_ECONFLICT when another relay holds it. */
static int take_lease(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  relay *r = ctx;
  lease_check lc = {r, false};
  const uow_value name = uow_text("outbox");
  int rc = store->ops->read(conn, &uow__lease_entity, NULL, &name, 1, 0, see_lease, &lc, st);
  if (!rc && lc.other)
    return UOW_ECONFLICT;
  uow_value params[3] = {name, uow_text(r->holder), uow_int64(uow__now_ms() + r->o.lease_ms)};
  if (!rc)
    rc = store->ops->exec(conn, "DELETE FROM uow_relay_lease WHERE name = ?", params, 1, NULL, st);
  if (!rc)
    rc = store->ops->exec(conn,
                          "INSERT INTO uow_relay_lease (name, holder, expires_at) VALUES (?, ?, ?)",
                          params, 3, NULL, st);
  return rc;
}

static int purge_and_count(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  relay *r = ctx;
  int rc = UOW_OK;
  const int64_t now = uow__now_ms();
  const int64_t every = r->o.retention_ms < PURGE_EVERY_MS ? r->o.retention_ms : PURGE_EVERY_MS;
  if (r->o.retention_ms >= 0 &&
      now - __atomic_load_n(&store->purged_at, __ATOMIC_RELAXED) >= every) {
    const uow_value before = uow_int64(now - r->o.retention_ms);
    int64_t purged = 0;
    rc = store->ops->exec(conn, "DELETE FROM uow_outbox WHERE state = 1 AND delivered_at < ?",
                          &before, 1, &purged, st);
    r->stats->purged += (uint64_t)purged;
    if (!rc)
      __atomic_store_n(&store->purged_at, now, __ATOMIC_RELAXED);
  }
  int64_t backlog = 0;
  if (!rc)
    rc = store->ops->query_int64(conn, "SELECT count(*) FROM uow_outbox WHERE state = 0", NULL, 0,
                                 &backlog, st);
  if (!rc)
    r->stats->backlog = (r->stats->backlog < 0 ? 0 : r->stats->backlog) + backlog;
  return rc;
}

static void reset_batch(relay *r) {
  r->events.len = 0;
  uow__arena_free(&r->arena);
  uow__arena_init(&r->arena);
}

/* Claim, deliver and mark one batch of `sink`'s kind of rows on `conn`. */
static int relay_batch(relay *r, uow_store_conn *conn, const uow_sink *sink, bool *found,
                       uow_status *st) {
  r->sink = sink;
  reset_batch(r);
  int rc;
  if (locks_rows(r->store)) {
    rc = uow__store_transaction(r->store, conn, 0, claim_locked, r, st);
  } else {
    rc = uow__store_transaction(r->store, conn, 0, claim_unlocked, r, st);
    if (!rc && r->events.len)
      rc = uow__store_transaction(r->store, conn, UOW_FOR_UPDATE, mark_only, r, st);
  }
  *found = *found || r->events.len > 0;
  return rc;
}

/* One pass over `store`: intents, then events; `*found` tells whether there
 * was anything to deliver. */
static int relay_store(relay *r, uow_store *store, bool *found) {
  r->store = store;
  uow_store_conn *conn = NULL;
  bool reused;
  uow_status st = {0, ""};
  int rc = uow__pool_acquire(store, &conn, &reused, &st);
  if (!rc && !locks_rows(store)) {
    rc = uow__store_transaction(r->store, conn, UOW_FOR_UPDATE, take_lease, r, &st);
    if (rc == UOW_ECONFLICT) { /* another relay has this store */
      uow__pool_release(store, conn, true);
      return UOW_OK;
    }
  }
  if (!rc)
    rc = relay_batch(r, conn, &r->intents, found, &st);
  if (!rc)
    rc = relay_batch(r, conn, r->user, found, &st);
  if (!rc)
    rc = uow__store_transaction(r->store, conn, 0, purge_and_count, r, &st);
  uow__pool_release(store, conn, rc != UOW_EIO);
  if (rc)
    return uow__env_fail(r->env, rc == UOW_ENOMEM ? rc : UOW_EIO, "relay: store '%s': %s",
                         store->name, st.message);
  return UOW_OK;
}

/* ---- the public calls ---- */

static int setup(relay *r, uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                 uow_relay_stats *stats) {
  memset(r, 0, sizeof(*r));
  if (!env)
    return UOW_EINVAL;
  if (!sink || sink->version != UOW_SINK_VERSION || !sink->deliver)
    return uow__env_fail(env, UOW_EINVAL, "relay: no sink, or a sink of another version");
  uow_relay_options defaults = UOW_RELAY_OPTIONS_INIT;
  r->o = opts ? *opts : defaults;
  if (r->o.version != UOW_RELAY_OPTIONS_VERSION)
    return uow__env_fail(env, UOW_EINVAL, "relay: options version %d is not %d", r->o.version,
                         UOW_RELAY_OPTIONS_VERSION);
  if (r->o.store && !uow__env_store(env, r->o.store))
    return uow__env_fail(env, UOW_EINVAL, "relay: no store named '%s'", r->o.store);
  if (r->o.batch > MAX_BATCH || r->o.backoff_ms < 0 || r->o.backoff_max_ms < 0 ||
      r->o.lease_ms < 0 || r->o.poll_ms < 0)
    return uow__env_fail(env, UOW_EINVAL,
                         "relay: batch must be at most %d and durations not negative", MAX_BATCH);
  r->o.batch = r->o.batch ? r->o.batch : DEFAULT_BATCH;
  r->o.max_attempts = r->o.max_attempts ? r->o.max_attempts : DEFAULT_ATTEMPTS;
  r->o.backoff_ms = r->o.backoff_ms ? r->o.backoff_ms : DEFAULT_BACKOFF_MS;
  r->o.backoff_max_ms = r->o.backoff_max_ms ? r->o.backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
  r->o.retention_ms = r->o.retention_ms ? r->o.retention_ms : DEFAULT_RETENTION_MS;
  r->o.lease_ms = r->o.lease_ms ? r->o.lease_ms : DEFAULT_LEASE_MS;
  r->o.poll_ms = r->o.poll_ms ? r->o.poll_ms : DEFAULT_POLL_MS;
  r->env = env;
  r->sink = r->user = sink;
  uow__intent_sink(env, &r->intents);
  r->stats = stats;
  r->seed = uow__random_seed(r) ^ env->nonce;
  r->seed = r->seed ? r->seed : 1;
  snprintf(r->holder, sizeof(r->holder), "%ld:%016llx:%p", (long)getpid(),
           (unsigned long long)env->nonce, (const void *)sink);
  uow__arena_init(&r->arena);
  return UOW_OK;
}

static int pass(relay *r, bool *found) {
  int rc = UOW_OK;
  r->stats->backlog = -1;
  for (size_t i = 0; i < r->env->stores.len; i++) {
    uow_store *store = UOW_VEC_AT(&r->env->stores, uow_store *, i);
    if (!uow__store_is_sql(store) || (r->o.store && strcmp(r->o.store, store->name) != 0))
      continue;
    int one = relay_store(r, store, found);
    rc = rc ? rc : one;
  }
  r->stats->passes++;
  return rc;
}

/* Give back the leases this relay holds, so that the next relay need not
 * wait for them to expire. */
static void release_leases(relay *r) {
  for (size_t i = 0; i < r->env->stores.len; i++) {
    uow_store *store = UOW_VEC_AT(&r->env->stores, uow_store *, i);
    if (!uow__store_is_sql(store) || locks_rows(store) ||
        (r->o.store && strcmp(r->o.store, store->name) != 0))
      continue;
    uow_store_conn *conn = NULL;
    bool reused;
    uow_status st = {0, ""};
    const uow_value holder = uow_text(r->holder);
    int rc = uow__pool_acquire(store, &conn, &reused, &st);
    if (!rc)
      rc = store->ops->exec(conn, "DELETE FROM uow_relay_lease WHERE holder = ?", &holder, 1, NULL,
                            &st);
    uow__pool_release(store, conn, rc == UOW_OK); /* a lease left behind expires */
  }
}

static void teardown(relay *r) {
  release_leases(r);
  uow__vec_free(&r->events);
  uow__arena_free(&r->arena);
}

int uow_relay_once(uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                   uow_relay_stats *stats) {
  uow_relay_stats ignored;
  memset(&ignored, 0, sizeof(ignored));
  relay r;
  int rc = setup(&r, env, sink, opts, stats ? stats : &ignored);
  if (rc)
    return rc;
  bool found = false;
  rc = pass(&r, &found);
  teardown(&r);
  return rc;
}

/* A connection of the relay's own, to a store that can wake it when outbox
 * rows are committed (PostgreSQL LISTEN/NOTIFY); NULL while there is none. */
typedef struct listener {
  uow_store *store;
  uow_store_conn *conn;
} listener;

static void listener_close(listener *l) {
  if (l->conn)
    l->store->ops->disconnect(l->conn);
  l->conn = NULL;
}

/* Wait for the next pass: woken by the store when it can, else `poll_ms`. */
static void idle(relay *r, listener *l) {
  if (!l->conn) {
    for (size_t i = 0; i < r->env->stores.len && !l->conn; i++) {
      uow_store *store = UOW_VEC_AT(&r->env->stores, uow_store *, i);
      uow_status st = {0, ""};
      if (uow__store_is_sql(store) && store->ops->wait_outbox &&
          (!r->o.store || strcmp(r->o.store, store->name) == 0) &&
          store->ops->connect(store->driver, &l->conn, &st) == UOW_OK)
        l->store = store;
    }
  }
  bool signalled = false;
  uow_status st = {0, ""};
  if (!l->conn) {
    uow__sleep_ms(r->o.poll_ms);
  } else if (l->store->ops->wait_outbox(l->conn, (int)r->o.poll_ms, &signalled, &st)) {
    listener_close(l); /* the server went away: poll, and listen again next time */
    uow__sleep_ms(r->o.poll_ms);
  }
}

/*
 * The stop flag is usually set by another thread while this one runs passes.
 * `volatile` alone does not make that a synchronized access (ThreadSanitizer
 * reports it, rightly, as a data race), so it is read with an atomic load;
 * the caller sets it with an atomic store (uow_relay_run's doc says how), or
 * from a signal handler on this thread, where volatile is enough.
 */
static bool stop_requested(const volatile int *stop) {
  return stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
}

int uow_relay_run(uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                  const volatile int *stop, uow_relay_progress_fn progress, void *arg) {
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  relay r;
  int rc = setup(&r, env, sink, opts, &stats);
  if (rc)
    return rc;
  if (!stop && !progress) {
    teardown(&r);
    return uow__env_fail(env, UOW_EINVAL, "relay: nothing can stop it (no stop flag, no progress)");
  }
  listener l = {NULL, NULL};
  while (!stop_requested(stop)) {
    bool found = false;
    pass(&r, &found); /* a failing store is tried again next time */
    if (progress && progress(arg, &stats))
      break;
    if (!found && !stop_requested(stop))
      idle(&r, &l);
  }
  listener_close(&l);
  teardown(&r);
  return UOW_OK;
}

int uow_outbox_requeue(uow_env *env, const char *store_name, uint64_t *count) {
  if (!env)
    return UOW_EINVAL;
  if (store_name && !uow__env_store(env, store_name))
    return uow__env_fail(env, UOW_EINVAL, "requeue: no store named '%s'", store_name);
  uint64_t total = 0;
  for (size_t i = 0; i < env->stores.len; i++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, i);
    if (!uow__store_is_sql(store) || (store_name && strcmp(store_name, store->name) != 0))
      continue;
    uow_store_conn *conn = NULL;
    bool reused;
    uow_status st = {0, ""};
    int64_t n = 0;
    const uow_value now = uow_int64(uow__now_ms());
    int rc = uow__pool_acquire(store, &conn, &reused, &st);
    if (!rc)
      rc = store->ops->exec(conn,
                            "UPDATE uow_outbox SET state = 0, attempts = 0, next_attempt_at = ? "
                            "WHERE state = 2",
                            &now, 1, &n, &st);
    uow__pool_release(store, conn, rc == UOW_OK);
    if (rc)
      return uow__env_fail(env, rc == UOW_ENOMEM ? rc : UOW_EIO, "requeue: store '%s': %s",
                           store->name, st.message);
    total += (uint64_t)n;
  }
  if (count)
    *count = total;
  return UOW_OK;
}
