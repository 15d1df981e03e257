/*
 * unit.c - the unit of work's public verbs and its state machine: lazy store
 * transactions, reads through the identity map, new and deleted objects,
 * events, hooks, savepoints, commit and rollback.
 *
 * States: ACTIVE -> COMMITTED | ROLLED_BACK, with FAILED after a failed flush
 * or statement (only rollback, rollback_to an open savepoint, or end are
 * accepted then). Ended units go to the environment's free list: a call on
 * an ended handle gets UOW_EMISUSE until a later uow_begin reuses it.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* ---- messages ---- */

static void vmessage(uow_unit *unit, const char *fmt, va_list ap) {
  vsnprintf(unit->errmsg, sizeof(unit->errmsg), fmt, ap);
}

int uow__unit_error(uow_unit *unit, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(unit, fmt, ap);
  va_end(ap);
  return code;
}

int uow__unit_fail(uow_unit *unit, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(unit, fmt, ap);
  va_end(ap);
  if (unit->state == UOW_UNIT_ACTIVE) {
    unit->state = UOW_UNIT_FAILED;
    unit->failed_depth = (unsigned)unit->savepoints.len;
  }
  return code;
}

int uow__unit_store_error(uow_unit *unit, const char *what, const uow_unit_store *us,
                          const uow_status *st) {
  const char *after = unit->committing       ? "nothing was written"
                      : unit->savepoints.len ? "roll back to the savepoint or roll back the unit"
                                             : "the unit must be rolled back";
  if (st->code == UOW_EINDOUBT)
    after = "the outcome is unknown to this process: check the store before retrying";
  return uow__unit_fail(unit, st->code ? st->code : UOW_EIO, "%s failed: store '%s': %s; %s", what,
                        us->store->name, st->message, after);
}

const char *uow_errmsg(const uow_unit *unit) { return unit ? unit->errmsg : "no unit (NULL)"; }

uow_env *uow_unit_env(const uow_unit *unit) { return unit ? unit->env : NULL; }

/* Why a unit that is not active refuses `verb` (see usable): sets the
 * message where there is a unit to hold it. */
static int refused(uow_unit *unit, const char *verb) {
  if (!unit)
    return UOW_EINVAL;
  if (unit->magic != UOW_UNIT_MAGIC)
    return UOW_EMISUSE;
  switch (unit->state) {
  case UOW_UNIT_ACTIVE:
    return UOW_OK;
  case UOW_UNIT_FAILED:
    return uow__unit_error(unit, UOW_EMISUSE,
                           "%s: the unit failed earlier (%s); roll it back first", verb,
                           "see the previous error");
  case UOW_UNIT_COMMITTED:
    return uow__unit_error(unit, UOW_EMISUSE, "%s: the unit is already committed", verb);
  case UOW_UNIT_ROLLED_BACK:
    return uow__unit_error(unit, UOW_EMISUSE, "%s: the unit is already rolled back", verb);
  case UOW_UNIT_ENDED:
    return uow__unit_error(unit, UOW_EMISUSE, "%s: the unit has ended", verb);
  }
  return UOW_EMISUSE;
}

/* Whether the unit accepts work (0), else why not. Inline: uow_new and
 * uow_strdup ask it for every object and string. */
static inline int usable(uow_unit *unit, const char *verb) {
  if (unit && unit->magic == UOW_UNIT_MAGIC && unit->state == UOW_UNIT_ACTIVE)
    return UOW_OK;
  return refused(unit, verb);
}

/* ---- begin and end ---- */

int uow_begin(uow_env *env, uow_unit **out) { return uow_begin_ex(env, NULL, out); }

/* The unit's id, "%016llx-%llu" of the environment's nonce and the unit's
 * number, written by hand: snprintf cost more than the rest of uow_begin. */
static void unit_id(char out[48], uint64_t nonce, uint64_t seq) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, nonce >>= 4)
    out[i] = hex[nonce & 15];
  out[16] = '-';
  char digits[20];
  int n = 0;
  do {
    digits[n++] = (char)('0' + seq % 10);
    seq /= 10;
  } while (seq);
  for (int i = 0; i < n; i++)
    out[17 + i] = digits[n - 1 - i];
  out[17 + n] = '\0';
}

/* One unit fewer open on the environment, `spare` (may be NULL) kept for the
 * next uow_begin. Lowered under the lock, so that uow_env_close and the unit
 * that ends last agree on which of them closes the environment. */
static void env_leave(uow_env *env, uow_unit *spare) {
  pthread_mutex_lock(&env->lock);
  if (spare) {
    spare->next_free = env->free_units;
    env->free_units = spare;
  }
  bool close = __atomic_sub_fetch(&env->open_units, 1, __ATOMIC_ACQ_REL) == 0 && env->closing;
  pthread_mutex_unlock(&env->lock);
  if (close)
    uow__env_free(env);
}

int uow_begin_ex(uow_env *env, const uow_begin_options *opts, uow_unit **out) {
  if (!out)
    return UOW_EINVAL;
  *out = NULL;
  if (!env)
    return UOW_EINVAL;
  if (opts && opts->version != UOW_BEGIN_OPTIONS_VERSION)
    return uow__env_fail(env, UOW_EINVAL, "begin: unknown options version %d", opts->version);
  /* Checked here: SQLite would ignore a bad level, PostgreSQL refuse it later. */
  if (opts &&
      (opts->isolation < UOW_ISOLATION_DEFAULT || opts->isolation > UOW_ISOLATION_SERIALIZABLE))
    return uow__env_fail(env, UOW_EINVAL, "begin: unknown isolation level %d",
                         (int)opts->isolation);
  if (!env->stores.len)
    return uow__env_fail(env, UOW_EINVAL, "begin: the environment has no store");
  /* A lost connection left a prepared transaction of ours: settle it before
   * a unit runs into its locks. */
  if (__atomic_load_n(&env->ndoubts, __ATOMIC_ACQUIRE))
    uow__coord_settle_doubts(env);
  pthread_mutex_lock(&env->lock);
  if (env->closing) {
    pthread_mutex_unlock(&env->lock);
    return uow__env_fail(env, UOW_EMISUSE,
                         "begin: the environment is closing (uow_env_close was called)");
  }
  /* Counted under the lock, so that uow_env_close sees this unit. */
  __atomic_add_fetch(&env->open_units, 1, __ATOMIC_ACQ_REL);
  uow_unit *unit = env->free_units;
  if (unit)
    env->free_units = unit->next_free;
  uint64_t seq = ++env->unit_seq;
  pthread_mutex_unlock(&env->lock);
  /* A recycled unit's memory (see keep_memory), reused before any new. */
  uow_arena arena;
  uow_vec records = {0};
  uow_map identity = {0};
  uow_vec events = {0};
  uow_flush_memory flush_memory;
  if (unit) {
    arena = unit->arena;
    records = unit->records;
    identity = unit->identity;
    events = unit->events;
    flush_memory = unit->flush_memory;
  } else {
    if (!(unit = uow__malloc(sizeof(*unit)))) {
      uow__env_fail(env, UOW_ENOMEM, "begin: out of memory");
      env_leave(env, NULL);
      return UOW_ENOMEM;
    }
    uow__arena_init(&arena);
    uow__flush_memory_init(&flush_memory);
  }
  memset(unit, 0, sizeof(*unit));
  unit->env = env;
  unit->arena = arena;
  unit->records = records;
  unit->records.huge = true; /* a bulk load lists hundreds of KiB of records */
  unit->identity = identity;
  unit->events = events;
  unit->flush_memory = flush_memory;
  unit->nstores = env->stores.len;
  unit->stores = uow__arena_alloc(&unit->arena, unit->nstores * sizeof(*unit->stores));
  if (!unit->stores) {
    uow__unit_memory_free(unit);
    uow__free(unit);
    uow__env_fail(env, UOW_ENOMEM, "begin: out of memory");
    env_leave(env, NULL);
    return UOW_ENOMEM;
  }
  for (size_t i = 0; i < unit->nstores; i++)
    unit->stores[i].store = UOW_VEC_AT(&env->stores, uow_store *, i);
  uow_begin_options defaults = UOW_BEGIN_OPTIONS_INIT;
  unit->opts = opts ? *opts : defaults;
  unit_id(unit->id, env->nonce, seq);
  unit->magic = UOW_UNIT_MAGIC;
  unit->state = UOW_UNIT_ACTIVE;
  *out = unit;
  return UOW_OK;
}

static void rollback_stores(uow_unit *unit) {
  uow__unit_settle(unit, false); /* what it sent is rolled back anyway */
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->conn || !us->in_txn)
      continue;
    uow_status st = {0, ""};
    if (us->store->ops->rollback(us->conn, &st)) {
      /* A connection that cannot roll back must not serve another unit. */
      uow__pool_release(us->store, us->conn, false);
      us->conn = NULL;
    }
    us->in_txn = false;
  }
}

static void release_connections(uow_unit *unit) {
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    uow__pool_release(us->store, us->conn, !us->in_txn);
    us->conn = NULL;
    us->in_txn = false;
  }
}

/* An event's bytes are in the unit's arena: dropping it forgets them. */
static void drop_events_and_hooks(uow_unit *unit, size_t events, size_t hooks) {
  unit->events.len = events;
  unit->hooks.len = hooks;
}

/* Empty the record list, the identity map, the event list and the arena for
 * the next unit, keeping what fits in UOW_UNIT_KEEP_BYTES (the flush's
 * memory was trimmed by the flush). */
static void keep_memory(uow_unit *unit) {
  uow_vec *records = &unit->records;
  uow_map *identity = &unit->identity;
  if (identity->cap * sizeof(uow_map_entry) > UOW_UNIT_KEEP_LIST) {
    uow__map_free(identity);
  } else if (!identity->len) {
    /* nothing to clear (and maybe no table yet) */
  } else if (identity->len * 4 >= identity->cap) {
    memset(identity->slots, 0, identity->cap * sizeof(uow_map_entry));
    identity->len = 0;
  } else {
    /* Few entries in a big table: removing them beats clearing every slot. */
    for (size_t i = 0; i < records->len && identity->len; i++)
      uow__identity_remove(unit, UOW_VEC_AT(records, uow_record *, i));
    if (identity->len) { /* every mapped record is listed; never keep a stale one */
      memset(identity->slots, 0, identity->cap * sizeof(uow_map_entry));
      identity->len = 0;
    }
  }
  uow__vec_keep(records, sizeof(uow_record *), UOW_UNIT_KEEP_LIST);
  uow__vec_keep(&unit->events, sizeof(uow_event), UOW_UNIT_KEEP_LIST);
  uow__arena_recycle(&unit->arena, UOW_UNIT_KEEP_BYTES);
}

void uow__unit_memory_free(uow_unit *unit) {
  uow__vec_free(&unit->records);
  uow__map_free(&unit->identity);
  uow__vec_free(&unit->events);
  uow__flush_memory_free(&unit->flush_memory);
  uow__arena_free(&unit->arena);
}

void uow_end(uow_unit *unit) {
  if (!unit || unit->magic != UOW_UNIT_MAGIC || unit->state == UOW_UNIT_ENDED)
    return;
  if (unit->state != UOW_UNIT_COMMITTED)
    rollback_stores(unit);
  release_connections(unit);
  drop_events_and_hooks(unit, 0, 0);
  uow__vec_free(&unit->hooks);
  uow__vec_free(&unit->savepoints);
  uow__vec_free(&unit->undo);
  uow__vec_free(&unit->cleanup);
  uow__vec_free(&unit->intents);
  uow__vec_free(&unit->sent);
  keep_memory(unit);
  unit->state = UOW_UNIT_ENDED;
  env_leave(unit->env, unit);
}

/* ---- stores ---- */

int uow__unit_settle(uow_unit *unit, bool report) {
  if (!unit->sent.len)
    return UOW_OK;
  uow_unit_store *us = &unit->stores[unit->sent_store];
  uow_status st = {0, ""};
  int rc = us->store->ops->write(us->conn, NULL, 0, false, &st);
  uow__vec_free(&unit->sent);
  return rc && report ? uow__unit_store_error(unit, "send", us, &st) : UOW_OK;
}

static int open_savepoints(uow_unit *unit, uow_unit_store *us, uow_status *st) {
  for (size_t level = 1; level <= unit->savepoints.len; level++) {
    int rc = us->store->ops->savepoint(us->conn, (unsigned)level, st);
    if (rc)
      return rc;
  }
  return UOW_OK;
}

static int start_transaction(uow_unit *unit, uow_unit_store *us, unsigned flags, uow_status *st) {
  const uow_store_ops *ops = us->store->ops;
  if (!(ops->caps & UOW_STORE_TRANSACTIONAL))
    return UOW_OK;
  int rc = ops->begin(us->conn, unit->opts.isolation, flags | unit->opts.flags, st);
  if (rc)
    return rc;
  us->in_txn = true;
  /* A store joining inside savepoints gets them too, so rollback_to works everywhere. */
  return open_savepoints(unit, us, st);
}

int uow__unit_join(uow_unit *unit, uow_store *store, unsigned flags, uow_unit_store **out) {
  uow_unit_store *us = &unit->stores[store->index];
  *out = us;
  int rc = uow__unit_settle(unit, true);
  if (rc || (us->conn && us->in_txn))
    return rc;
  uow_status st = {0, ""};
  if (!us->conn && uow__coord_store_in_doubt(unit->env, store)) {
    /* Settle it now if this unit holds no connection that settling may need. */
    bool holds = false;
    for (size_t i = 0; i < unit->nstores; i++)
      holds = holds || unit->stores[i].conn;
    if (!holds)
      uow__coord_settle_doubts(unit->env);
    if (uow__coord_store_in_doubt(unit->env, store)) {
      uow_status_set(&st, UOW_ECONFLICT,
                     "an earlier unit of this process left a prepared transaction there that is "
                     "not settled yet (its connection was lost, or its commit met a recovery); "
                     "it holds that unit's locks; run the unit again (uow_run does) after the "
                     "next uow_begin or uow_recover() settles it");
      return uow__unit_store_error(unit, "join", us, &st);
    }
  }
  if (!us->conn) {
    rc = uow__pool_acquire(store, &us->conn, &us->reused, &st);
    if (rc)
      return uow__unit_store_error(unit, "connect", us, &st);
  }
  rc = start_transaction(unit, us, flags, &st);
  if (rc == UOW_EIO && us->reused && !us->proven) {
    /* A pooled connection whose server went away since its last unit: one fresh try. */
    uow__pool_release(store, us->conn, false);
    us->conn = NULL;
    rc = uow__pool_acquire(store, &us->conn, &us->reused, &st);
    if (!rc)
      rc = start_transaction(unit, us, flags, &st);
  }
  if (rc)
    return uow__unit_store_error(unit, "begin", us, &st);
  return UOW_OK;
}

/* ---- reading ---- */

static const uow_mapping *find_mapping(uow_unit *unit, const uow_entity *entity, const char *verb) {
  const uow_mapping *map = entity ? uow__env_mapping(unit->env, entity) : NULL;
  if (!map)
    uow__unit_error(unit, UOW_EINVAL, "%s: entity %s is not mapped to a store", verb,
                    entity && entity->name ? entity->name : "(null)");
  unit->last_map = map ? map : unit->last_map;
  return map;
}

/* Units make many objects of one entity in a row: the last answer first. */
static inline const uow_mapping *mapping(uow_unit *unit, const uow_entity *entity,
                                         const char *verb) {
  const uow_mapping *map = unit->last_map;
  return map && map->entity == entity ? map : find_mapping(unit, entity, verb);
}

int uow_get(uow_unit *unit, const uow_entity *entity, const void *key, void **out) {
  return uow_get_ex(unit, entity, key, 0, out);
}

int uow_get_ex(uow_unit *unit, const uow_entity *entity, const void *key, unsigned flags,
               void **out) {
  if (out)
    *out = NULL;
  int rc = usable(unit, "get");
  if (rc)
    return rc;
  const uow_mapping *map = mapping(unit, entity, "get");
  if (!map)
    return UOW_EINVAL;
  if (!key || !out)
    return uow__unit_error(unit, UOW_EINVAL, "get %s: key and out are required", entity->name);
  /* The key points to a value of the key member's type: read it as that member. */
  const uow_column *col = &entity->columns[map->key];
  uow_value k;
  uow__column_read(col, (const char *)key - col->offset, &k);
  if (k.is_null)
    return uow__unit_error(unit, UOW_EINVAL, "get %s: the key is NULL", entity->name);
  uow_record *rec = uow__identity_get(unit, map, &k);
  if (!rec) {
    rc = uow__load(unit, map, NULL, &k, 1, flags, NULL, &rec);
    if (rc == UOW_ENOTFOUND)
      return uow__unit_error(unit, rc, "get %s: no row with that key", entity->name);
    if (rc)
      return rc;
  }
  if (rec->state == UOW_REC_DELETED || rec->state == UOW_REC_GONE)
    return uow__unit_error(unit, UOW_ENOTFOUND, "get %s: deleted in this unit", entity->name);
  *out = uow__record_object(rec);
  return UOW_OK;
}

int uow_find(uow_unit *unit, const uow_entity *entity, const char *where, const uow_value *params,
             size_t nparams, void ***rows, size_t *count) {
  return uow_find_ex(unit, entity, where, params, nparams, 0, rows, count);
}

int uow_find_ex(uow_unit *unit, const uow_entity *entity, const char *where,
                const uow_value *params, size_t nparams, unsigned flags, void ***rows,
                size_t *count) {
  if (rows)
    *rows = NULL;
  if (count)
    *count = 0;
  int rc = usable(unit, "find");
  if (rc)
    return rc;
  const uow_mapping *map = mapping(unit, entity, "find");
  if (!map)
    return UOW_EINVAL;
  if (!rows || !count || (nparams && !params))
    return uow__unit_error(unit, UOW_EINVAL, "find %s: rows, count and params are required",
                           entity->name);
  if (!(map->store->ops->caps & UOW_STORE_SQL) && where)
    return uow__unit_error(unit, UOW_EINVAL, "find %s: store '%s' cannot run queries", entity->name,
                           map->store->name);
  if ((rc = uow__flush(unit, false)))
    return rc;
  uow_vec found = {0};
  /* An empty condition means every row; the store reads NULL with no parameters so. */
  rc = uow__load(unit, map, where && *where ? where : NULL, params, nparams, flags, &found, NULL);
  if (rc) {
    uow__vec_free(&found);
    return rc;
  }
  size_t n = found.len;
  void **array = uow__arena_dup(&unit->arena, found.items, n * sizeof(void *));
  uow__vec_free(&found);
  if (!array && n)
    return uow__unit_error(unit, UOW_ENOMEM, "find %s: out of memory", entity->name);
  *rows = array;
  *count = n;
  return UOW_OK;
}

/* ---- several reads at once (uow_fetch) ---- */

static void fetch_clear(uow_fetch_item *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uow_fetch_item *it = &items[i];
    if (it->key && it->object)
      *it->object = NULL;
    if (!it->key && it->rows)
      *it->rows = NULL;
    if (!it->key && it->count)
      *it->count = 0;
    it->rc = UOW_OK;
  }
}

/* Check item `i` as uow_get_ex or uow_find_ex would, and make its load. */
static int fetch_check(uow_unit *unit, const uow_fetch_item *it, size_t i, uow_load *load) {
  const char *kind = it->key ? "get" : "find";
  const char *name = it->entity && it->entity->name ? it->entity->name : "(null)";
  const uow_mapping *map = it->entity ? uow__env_mapping(unit->env, it->entity) : NULL;
  if (!map)
    return uow__unit_error(unit, UOW_EINVAL,
                           "fetch item %zu (%s %s): the entity is not mapped to a store", i, kind,
                           name);
  load->map = map;
  load->item = i;
  load->flags = it->flags;
  if (it->key) {
    if (!it->object || it->where || it->params || it->nparams)
      return uow__unit_error(unit, UOW_EINVAL,
                             "fetch item %zu (get %s): object is required, and a get takes no "
                             "where clause or parameters",
                             i, name);
    /* As in uow_get_ex: the key points to a value of the key member's type. */
    const uow_column *col = &it->entity->columns[map->key];
    uow__column_read(col, (const char *)it->key - col->offset, &load->key);
    if (load->key.is_null)
      return uow__unit_error(unit, UOW_EINVAL, "fetch item %zu (get %s): the key is NULL", i, name);
    load->params = &load->key;
    load->nparams = 1;
    return UOW_OK;
  }
  if (!it->rows || !it->count || (it->nparams && !it->params))
    return uow__unit_error(
        unit, UOW_EINVAL, "fetch item %zu (find %s): rows, count and params are required", i, name);
  if (!(map->store->ops->caps & UOW_STORE_SQL) && it->where)
    return uow__unit_error(unit, UOW_EINVAL,
                           "fetch item %zu (find %s): store '%s' cannot run queries", i, name,
                           map->store->name);
  load->find = true;
  load->where = it->where && *it->where ? it->where : NULL; /* "" means every row */
  load->params = it->params;
  load->nparams = it->nparams;
  return UOW_OK;
}

/* Answer the gets that need no read: objects the unit holds, and a second
 * get of a key an earlier item reads already. */
static void fetch_answer_from_memory(uow_unit *unit, uow_load *loads, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uow_load *load = &loads[i];
    if (load->find)
      continue;
    if ((load->first = uow__identity_get(unit, load->map, &load->key))) {
      load->answered = true;
      continue;
    }
    for (size_t j = 0; j < i && !load->answered; j++) {
      const uow_load *earlier = &loads[j];
      if (!earlier->find && !earlier->answered && earlier->map == load->map &&
          uow__value_equal(&earlier->key, &load->key)) {
        load->answered = true;
        load->like = j + 1;
      }
    }
  }
}

/* Every store's reads, each store's in one batch, in the order the items name them. */
static int fetch_read(uow_unit *unit, uow_load *loads, size_t n) {
  uint64_t done = 0; /* env store indexes are below UOW__STORES_MAX (64) */
  for (size_t i = 0; i < n; i++) {
    if (loads[i].answered)
      continue;
    uow_store *store = loads[i].map->store;
    uint64_t bit = UINT64_C(1) << store->index;
    if (done & bit)
      continue;
    done |= bit;
    int rc = uow__load_many(unit, store, loads, n);
    if (rc)
      return rc;
  }
  return UOW_OK;
}

/* Set the items' outputs from their loads; UOW_ENOTFOUND names the first get without an object. */
static int fetch_outputs(uow_unit *unit, uow_fetch_item *items, uow_load *loads, size_t n) {
  int rc = UOW_OK;
  for (size_t i = 0; i < n; i++) {
    uow_fetch_item *it = &items[i];
    uow_load *load = &loads[i];
    if (load->find) {
      size_t count = load->rows.len;
      void **array = uow__arena_dup(&unit->arena, load->rows.items, count * sizeof(void *));
      if (!array && count)
        return uow__unit_error(unit, UOW_ENOMEM, "fetch item %zu (find %s): out of memory", i,
                               it->entity->name);
      *it->rows = array;
      *it->count = count;
      continue;
    }
    uow_record *rec = load->like ? loads[load->like - 1].first : load->first;
    bool deleted = rec && (rec->state == UOW_REC_DELETED || rec->state == UOW_REC_GONE);
    if (rec && !deleted) {
      *it->object = uow__record_object(rec);
      continue;
    }
    it->rc = UOW_ENOTFOUND;
    if (rc == UOW_OK)
      rc = uow__unit_error(unit, UOW_ENOTFOUND, "fetch item %zu (get %s): %s", i, it->entity->name,
                           deleted ? "deleted in this unit" : "no row with that key");
  }
  return rc;
}

int uow_fetch(uow_unit *unit, uow_fetch_item *items, size_t n) {
  /* Outputs are cleared on every failure, a refused unit's too (as uow_get does). */
  if (items)
    fetch_clear(items, n);
  int rc = usable(unit, "fetch");
  if (rc)
    return rc;
  if (!items || !n)
    return uow__unit_error(unit, UOW_EINVAL, "fetch: items and a count of at least 1 are required");
  uow_load *loads = uow__calloc(n, sizeof(*loads));
  if (!loads)
    return uow__unit_error(unit, UOW_ENOMEM, "fetch: out of memory");
  bool any_find = false;
  size_t i = 0;
  for (; i < n; i++) {
    if ((rc = fetch_check(unit, &items[i], i, &loads[i])))
      break;
    any_find = any_find || loads[i].find;
  }
  /* One flush before every read, as uow_find does before its own. */
  if (!rc && any_find)
    rc = uow__flush(unit, false);
  if (!rc) {
    fetch_answer_from_memory(unit, loads, n);
    rc = fetch_read(unit, loads, n);
  }
  if (!rc)
    rc = fetch_outputs(unit, items, loads, n);
  if (rc && rc != UOW_ENOTFOUND) {
    fetch_clear(items, n);
    if (i < n)
      items[i].rc = rc;
    for (size_t j = 0; j < n; j++)
      if (loads[j].rc)
        items[j].rc = loads[j].rc;
  }
  for (size_t j = 0; j < n; j++)
    uow__vec_free(&loads[j].rows);
  uow__free(loads);
  return rc;
}

/* ---- changing ---- */

int uow_new(uow_unit *unit, const uow_entity *entity, void **out) {
  if (out)
    *out = NULL;
  int rc = usable(unit, "new");
  if (rc)
    return rc;
  const uow_mapping *map = mapping(unit, entity, "new");
  if (!map)
    return UOW_EINVAL;
  if (!out)
    return uow__unit_error(unit, UOW_EINVAL, "new %s: out is required", entity->name);
  uow_record *rec = uow__record_new(unit, map, 0);
  if (!rec)
    return uow__unit_error(unit, UOW_ENOMEM, "new %s: out of memory", entity->name);
  rec->state = UOW_REC_NEW;
  unit->mixed = unit->mixed || map->parents || (map->store->ops->caps & UOW_STORE_INTENTS);
  unit->new_stores |= UINT64_C(1) << map->store->index;
  *out = uow__record_object(rec);
  return UOW_OK;
}

int uow_delete(uow_unit *unit, void *object) {
  int rc = usable(unit, "delete");
  if (rc)
    return rc;
  uow_record *rec = uow__record_of(unit, object);
  if (!rec)
    return uow__unit_error(unit, UOW_EINVAL, "delete: not an object of this unit");
  if (rec->state == UOW_REC_DELETED || rec->state == UOW_REC_GONE)
    return UOW_OK;
  if (uow__record_touch(unit, rec))
    return uow__unit_error(unit, UOW_ENOMEM, "delete: out of memory");
  rec->state = rec->state == UOW_REC_NEW ? UOW_REC_GONE : UOW_REC_DELETED;
  unit->mixed = true;
  return UOW_OK;
}

char *uow_strdup(uow_unit *unit, const char *s) {
  if (!s || usable(unit, "strdup"))
    return NULL;
  char *copy = uow__arena_strndup(&unit->arena, s, strlen(s));
  if (!copy)
    uow__unit_error(unit, UOW_ENOMEM, "strdup: out of memory");
  return copy;
}

uow_blob uow_blobdup(uow_unit *unit, const void *data, size_t size) {
  uow_blob blob = {NULL, 0};
  if (usable(unit, "blobdup"))
    return blob;
  if (!data && size) {
    uow__unit_error(unit, UOW_EINVAL, "blobdup: no data for %zu bytes", size);
    return blob;
  }
  if (size > UOW__VALUE_MAX) {
    uow__unit_error(unit, UOW_EINVAL, "blobdup: %zu bytes is over 2 GiB (a negative count?)", size);
    return blob;
  }
  blob.data = uow__arena_alloc(&unit->arena, size + 1);
  if (!blob.data)
    uow__unit_error(unit, UOW_ENOMEM, "blobdup: out of memory");
  else if (size)
    memcpy((void *)blob.data, data, size);
  blob.size = blob.data ? size : 0;
  return blob;
}

int uow_flush(uow_unit *unit) {
  int rc = usable(unit, "flush");
  return rc ? rc : uow__flush(unit, false);
}

int uow_send(uow_unit *unit) {
  int rc = usable(unit, "send");
  return rc ? rc : uow__send(unit);
}

int uow_exec(uow_unit *unit, const char *store, const char *sql, const uow_value *params,
             size_t nparams) {
  return uow_exec_ex(unit, store, sql, params, nparams, NULL);
}

int uow_exec_ex(uow_unit *unit, const char *store, const char *sql, const uow_value *params,
                size_t nparams, int64_t *affected) {
  int rc = usable(unit, "exec");
  if (rc)
    return rc;
  uow_store *target = uow__env_store(unit->env, store);
  if (!target)
    return uow__unit_error(unit, UOW_EINVAL, "exec: no store named '%s'", store ? store : "(null)");
  if (!sql || (nparams && !params))
    return uow__unit_error(unit, UOW_EINVAL, "exec: sql and params are required");
  if (!(target->ops->caps & UOW_STORE_SQL))
    return uow__unit_error(unit, UOW_EINVAL, "exec: store '%s' does not run SQL", store);
  uow_store *decider;
  if ((rc = uow__flush(unit, false)) ||
      (rc = uow__coord_plan(unit, uow__coord_writers(unit) | UINT64_C(1) << target->index,
                            &decider)))
    return rc;
  uow_unit_store *us;
  if ((rc = uow__unit_join(unit, target, 0, &us)))
    return rc;
  uow_status st = {0, ""};
  int64_t n = 0;
  rc = target->ops->exec(us->conn, sql, params, nparams, &n, &st);
  if (rc)
    return uow__unit_store_error(unit, "exec", us, &st);
  us->proven = true;
  /* A statement that reports no changed rows (DDL, a lock) may still have
   * written: the store takes part in the commit as a writer. */
  us->wrote = true;
  if (affected)
    *affected = n;
  return UOW_OK;
}

int uow_emit(uow_unit *unit, const char *topic, const char *key, const void *payload, size_t len) {
  int rc = usable(unit, "emit");
  if (rc)
    return rc;
  if (!topic || !*topic || (len && !payload))
    return uow__unit_error(unit, UOW_EINVAL, "emit: a topic is required (and payload for len)");
  if (len > UOW__VALUE_MAX)
    return uow__unit_error(unit, UOW_EINVAL,
                           "emit %s: a payload of %zu bytes is over 2 GiB (a negative count?)",
                           topic, len);
  /* In the unit's memory, as its objects are: an event dropped by a
   * rollback to a savepoint keeps its bytes until the unit ends. */
  uow_arena *arena = &unit->arena;
  uow_event ev = {uow__arena_strndup(arena, topic, strlen(topic)),
                  key ? uow__arena_strndup(arena, key, strlen(key)) : NULL,
                  uow__arena_dup(arena, payload, len), len};
  uow_event *slot = NULL;
  if (ev.topic && (!key || ev.key) && ev.payload)
    slot = uow__vec_push(&unit->events, sizeof(*slot));
  if (!slot)
    return uow__unit_error(unit, UOW_ENOMEM, "emit %s: out of memory", topic);
  *slot = ev;
  return UOW_OK;
}

int uow_on_commit(uow_unit *unit, uow_hook_fn fn, void *arg) {
  int rc = usable(unit, "on_commit");
  if (rc)
    return rc;
  if (!fn)
    return uow__unit_error(unit, UOW_EINVAL, "on_commit: no function");
  uow_hook *hook = uow__vec_push(&unit->hooks, sizeof(*hook));
  if (!hook)
    return uow__unit_error(unit, UOW_ENOMEM, "on_commit: out of memory");
  hook->fn = fn;
  hook->arg = arg;
  return UOW_OK;
}

/* ---- savepoints ---- */

typedef enum savepoint_op { SP_OPEN, SP_RELEASE, SP_ROLLBACK } savepoint_op;

/* Run a savepoint operation at `level` on every store in a transaction. */
static int each_store(uow_unit *unit, savepoint_op op, unsigned level) {
  static const char *const names[] = {"savepoint", "release", "rollback_to"};
  /* What uow_send left in flight was sent inside the innermost savepoint (a
   * savepoint flushes first): rolling back to it drops its outcome. */
  int rc = uow__unit_settle(unit, op != SP_ROLLBACK);
  if (rc)
    return rc;
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->in_txn)
      continue;
    const uow_store_ops *ops = us->store->ops;
    uow_status st = {0, ""};
    rc = op == SP_OPEN      ? ops->savepoint(us->conn, level, &st)
         : op == SP_RELEASE ? ops->release(us->conn, level, &st)
                            : ops->rollback_to(us->conn, level, &st);
    if (rc)
      return uow__unit_store_error(unit, names[op], us, &st);
  }
  return UOW_OK;
}

int uow_savepoint(uow_unit *unit) {
  int rc = usable(unit, "savepoint");
  if (rc)
    return rc;
  /* Flushing first makes every store match the objects, so the savepoint
   * only has to remember what changes after it. */
  if ((rc = uow__flush(unit, false)))
    return rc;
  uow_savepoint_mark *sp = uow__vec_push(&unit->savepoints, sizeof(*sp));
  if (!sp)
    return uow__unit_error(unit, UOW_ENOMEM, "savepoint: out of memory");
  sp->serial = ++unit->sp_serial;
  sp->records = unit->records.len;
  sp->events = unit->events.len;
  sp->hooks = unit->hooks.len;
  sp->undo = unit->undo.len;
  if ((rc = each_store(unit, SP_OPEN, (unsigned)unit->savepoints.len)))
    unit->savepoints.len--;
  return rc;
}

int uow_release(uow_unit *unit) {
  int rc = usable(unit, "release");
  if (rc)
    return rc;
  if (!unit->savepoints.len)
    return uow__unit_error(unit, UOW_EMISUSE, "release: no savepoint is open");
  if ((rc = each_store(unit, SP_RELEASE, (unsigned)unit->savepoints.len)))
    return rc;
  unit->savepoints.len--;
  /* The undo entries now belong to the enclosing savepoint, if any. */
  if (!unit->savepoints.len)
    unit->undo.len = 0;
  return UOW_OK;
}

/* Put tracked objects back as they were when the savepoint was opened. */
static void undo_objects(uow_unit *unit, const uow_savepoint_mark *sp) {
  for (size_t i = unit->undo.len; i-- > sp->undo;) {
    uow_undo *u = &UOW_VEC_AT(&unit->undo, uow_undo, i);
    uow_record *rec = u->record;
    uow__identity_remove(unit, rec);
    rec->state = u->state;
    rec->snapshot = u->snapshot;
    rec->undo_mark = 0;
    /* Re-adding cannot need memory: the map held this record before. */
    if (u->in_map)
      uow__identity_add(unit, rec);
  }
  unit->undo.len = sp->undo;
  unit->mixed = true; /* the records made after the savepoint are gone */
  for (size_t i = 0; i < unit->records.len; i++) {
    uow_record *rec = UOW_VEC_AT(&unit->records, uow_record *, i);
    if (i >= sp->records) {
      uow__identity_remove(unit, rec);
      rec->state = UOW_REC_GONE;
    } else if (rec->snapshot && rec->state != UOW_REC_GONE) {
      /* At the savepoint everything was flushed: the snapshot is what the member were. */
      memcpy(uow__record_object(rec), rec->snapshot, rec->map->entity->size);
    }
  }
}

int uow_rollback_to(uow_unit *unit) {
  if (!unit)
    return UOW_EINVAL;
  if (unit->magic != UOW_UNIT_MAGIC ||
      (unit->state != UOW_UNIT_ACTIVE && unit->state != UOW_UNIT_FAILED))
    return usable(unit, "rollback_to");
  if (!unit->savepoints.len)
    return uow__unit_error(unit, UOW_EMISUSE, "rollback_to: no savepoint is open");
  unsigned level = (unsigned)unit->savepoints.len;
  const uow_savepoint_mark sp =
      UOW_VEC_AT(&unit->savepoints, uow_savepoint_mark, unit->savepoints.len - 1);
  int rc = each_store(unit, SP_ROLLBACK, level);
  if (rc) {
    /* The stores may be half way back: only a full rollback is safe now. */
    unit->state = UOW_UNIT_FAILED;
    unit->failed_depth = 0;
    return rc;
  }
  undo_objects(unit, &sp);
  drop_events_and_hooks(unit, sp.events, sp.hooks);
  unit->savepoints.len--;
  if (unit->state == UOW_UNIT_FAILED && unit->failed_depth >= level)
    unit->state = UOW_UNIT_ACTIVE;
  return UOW_OK;
}

/* ---- commit and rollback ---- */

int uow_commit(uow_unit *unit) {
  int rc = usable(unit, "commit");
  if (rc)
    return rc;
  unit->committing = true;
  rc = uow__flush(unit, true);
  unit->committing = false;
  if (rc) {
    /* Roll back at once: what the message says ("nothing was written") is then true. */
    rollback_stores(unit);
    unit->state = UOW_UNIT_FAILED;
    unit->failed_depth = 0;
    unit->savepoints.len = 0;
    return rc;
  }
  unit->state = UOW_UNIT_COMMITTED;
  release_connections(unit);
  uow__intents_apply(unit, unit->outbox);
  for (size_t i = 0; i < unit->hooks.len; i++) {
    uow_hook *hook = &UOW_VEC_AT(&unit->hooks, uow_hook, i);
    hook->fn(hook->arg);
  }
  return UOW_OK;
}

int uow_rollback(uow_unit *unit) {
  if (!unit)
    return UOW_EINVAL;
  if (unit->magic != UOW_UNIT_MAGIC ||
      (unit->state != UOW_UNIT_ACTIVE && unit->state != UOW_UNIT_FAILED))
    return usable(unit, "rollback");
  rollback_stores(unit);
  release_connections(unit);
  drop_events_and_hooks(unit, 0, 0);
  unit->savepoints.len = 0;
  unit->state = UOW_UNIT_ROLLED_BACK;
  return UOW_OK;
}
