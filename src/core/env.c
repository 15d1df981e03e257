/*
 * env.c - the environment: the store registry, stores opened from URLs with
 * their connection pools, entity mappings (checked once here so that the hot
 * paths can trust them), and schema creation.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/core.h"

extern const uow_store_ops uow__sqlite_store;
extern const uow_store_ops uow__postgres_store;
extern const uow_store_ops uow__redis_store;

enum { MAX_REGISTERED = 16, DEFAULT_POOL = 8, MAX_COLUMNS = 64 };

static const uow_store_ops *registered[MAX_REGISTERED] = {&uow__sqlite_store, &uow__postgres_store,
                                                          &uow__redis_store};
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

int uow_register_store(const uow_store_ops *ops) {
  unsigned sql = UOW_STORE_TRANSACTIONAL | UOW_STORE_SQL;
  /* ABI 2 stores still register: their table simply ends before read_many. */
  if (!ops || ops->abi < 2 || ops->abi > UOW_STORE_ABI || !ops->scheme || !ops->open ||
      !ops->connect || ((ops->caps & sql) == sql && !ops->query_int64))
    return UOW_EINVAL;
  int rc = UOW_ENOMEM;
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < MAX_REGISTERED; i++) {
    if (registered[i] && strcmp(registered[i]->scheme, ops->scheme) == 0) {
      rc = UOW_EINVAL;
      break;
    }
    if (!registered[i]) {
      registered[i] = ops;
      rc = UOW_OK;
      break;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

static const uow_store_ops *find_ops(const char *url) {
  const char *colon = strchr(url, ':');
  if (!colon)
    return NULL;
  size_t len = (size_t)(colon - url);
  const uow_store_ops *found = NULL;
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < MAX_REGISTERED && registered[i] && !found; i++) {
    const uow_store_ops *ops = registered[i];
    if ((strlen(ops->scheme) == len && strncmp(ops->scheme, url, len) == 0) ||
        (ops->alias && strlen(ops->alias) == len && strncmp(ops->alias, url, len) == 0))
      found = ops;
  }
  pthread_mutex_unlock(&registry_lock);
  return found;
}

int uow__env_fail(uow_env *env, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&env->lock);
  vsnprintf(env->errmsg, sizeof(env->errmsg), fmt, ap);
  pthread_mutex_unlock(&env->lock);
  va_end(ap);
  return code;
}

const char *uow_env_errmsg(const uow_env *env) {
  return env ? env->errmsg : "no environment (NULL)";
}

int uow_env_open(const uow_env_options *opts, uow_env **out) {
  if (!out)
    return UOW_EINVAL;
  *out = NULL;
  if (opts && (opts->version < 1 || opts->version > UOW_ENV_OPTIONS_VERSION))
    return UOW_EINVAL;
  uow_env *env = uow__calloc(1, sizeof(*env));
  if (!env)
    return UOW_ENOMEM;
  uow_env_options defaults = UOW_ENV_OPTIONS_INIT;
  env->opts = defaults;
  if (opts) {
    env->opts.pool_size = opts->pool_size;
    if (opts->outbox_store && !(env->opts.outbox_store = uow__strdup(opts->outbox_store)))
      goto nomem;
    if (opts->version >= 2 && opts->decider_store &&
        !(env->opts.decider_store = uow__strdup(opts->decider_store)))
      goto nomem;
  }
  if (!env->opts.pool_size)
    env->opts.pool_size = DEFAULT_POOL;
  pthread_mutex_init(&env->lock, NULL);
  /* Unit ids must not repeat across processes and restarts: a random nonce
   * beside a counter. The clock is the fallback if the kernel has no entropy call. */
  if (getrandom(&env->nonce, sizeof(env->nonce), 0) != (ssize_t)sizeof(env->nonce))
    env->nonce = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)env << 16);
  *out = env;
  return UOW_OK;
nomem:
  uow__free((char *)env->opts.outbox_store);
  uow__free(env);
  return UOW_ENOMEM;
}

static void store_close(uow_store *store) {
  for (size_t i = 0; i < store->nidle; i++)
    store->ops->disconnect(store->idle[i]);
  if (store->driver && store->ops->close)
    store->ops->close(store->driver);
  pthread_mutex_destroy(&store->lock);
  pthread_cond_destroy(&store->available);
  for (size_t i = 0; i < store->finished.len; i++)
    uow__free(UOW_VEC_AT(&store->finished, char *, i));
  uow__vec_free(&store->finished);
  uow__free(store->idle);
  uow__free(store->name);
  uow__free(store->url);
  uow__free(store);
}

void uow_env_close(uow_env *env) {
  if (!env)
    return;
  /* With units open, the last uow_end closes it: a thread still finishing
   * a unit at shutdown gets to commit or roll back in peace. */
  pthread_mutex_lock(&env->lock);
  bool deferred = __atomic_load_n(&env->open_units, __ATOMIC_ACQUIRE) > 0;
  env->closing = deferred;
  pthread_mutex_unlock(&env->lock);
  if (!deferred)
    uow__env_free(env);
}

void uow__env_free(uow_env *env) {
  uow__coord_settle_doubts(env);
  uow__coord_drain(env);
  for (size_t i = 0; i < env->doubts.len; i++)
    uow__free(UOW_VEC_AT(&env->doubts, char *, i));
  uow__vec_free(&env->doubts);
  for (size_t i = 0; i < env->stores.len; i++)
    store_close(UOW_VEC_AT(&env->stores, uow_store *, i));
  for (size_t i = 0; i < env->mappings.len; i++)
    uow__free(UOW_VEC_AT(&env->mappings, uow_mapping *, i));
  while (env->free_units) {
    uow_unit *next = env->free_units->next_free;
    uow__unit_memory_free(env->free_units);
    uow__free(env->free_units);
    env->free_units = next;
  }
  uow__vec_free(&env->stores);
  uow__vec_free(&env->mappings);
  uow__map_free(&env->by_entity);
  uow__free((char *)env->opts.outbox_store);
  uow__free((char *)env->opts.decider_store);
  pthread_mutex_destroy(&env->lock);
  uow__free(env);
}

uow_store *uow__env_store(const uow_env *env, const char *name) {
  for (size_t i = 0; name && i < env->stores.len; i++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, i);
    if (strcmp(store->name, name) == 0)
      return store;
  }
  return NULL;
}

/* Stores and mappings are set up before units run: a unit sizes its table of
 * stores at uow_begin, and the lists change without a lock. */
static int setup_phase(uow_env *env, const char *what, const char *name) {
  size_t open = __atomic_load_n(&env->open_units, __ATOMIC_ACQUIRE);
  if (!open)
    return UOW_OK;
  return uow__env_fail(env, UOW_EMISUSE,
                       "%s %s: %zu unit%s open on this environment; add stores and map "
                       "entities before units begin",
                       what, name ? name : "(null)", open, open == 1 ? " is" : "s are");
}

int uow_env_add_store(uow_env *env, const char *name, const char *url) {
  if (!env)
    return UOW_EINVAL;
  int rc = setup_phase(env, "add store", name);
  if (rc)
    return rc;
  if (!name || !uow__identifier_ok(name) || strlen(name) >= UOW__STORE_NAME_MAX)
    return uow__env_fail(env, UOW_EINVAL,
                         "add store: the name must be 1 to %d letters, digits and underscores",
                         UOW__STORE_NAME_MAX - 1);
  if (env->stores.len >= UOW__STORES_MAX)
    return uow__env_fail(env, UOW_EINVAL, "add store '%s': an environment holds at most %d stores",
                         name, UOW__STORES_MAX);
  if (!url)
    return uow__env_fail(env, UOW_EINVAL, "add store '%s': no URL", name);
  char shown[512];
  uow__redact_url(url, shown, sizeof(shown));
  if (uow__env_store(env, name))
    return uow__env_fail(env, UOW_EINVAL, "add store '%s': the name is taken", name);
  const uow_store_ops *ops = find_ops(url);
  if (!ops)
    return uow__env_fail(env, UOW_EINVAL,
                         "add store '%s': unknown URL scheme in '%s' (use sqlite:PATH, "
                         "sqlite::memory: or postgresql://...)",
                         name, shown);
  uow_store *store = uow__calloc(1, sizeof(*store));
  if (!store)
    return uow__env_fail(env, UOW_ENOMEM, "add store '%s': out of memory", name);
  pthread_mutex_init(&store->lock, NULL);
  pthread_cond_init(&store->available, NULL);
  store->ops = ops;
  store->name = uow__strdup(name);
  store->url = uow__strdup(shown);
  rc = UOW_ENOMEM;
  uow_status st = {0, ""};
  if (!store->name || !store->url)
    goto fail;
  uow_store_config cfg = {1, store->name};
  rc = ops->open(url, &cfg, &store->driver, &st);
  if (rc) {
    uow__env_fail(env, rc, "add store '%s' (%s): %s", name, shown, st.message);
    goto fail_quiet;
  }
  store->max = env->opts.pool_size;
  unsigned limit = ops->max_connections ? ops->max_connections(store->driver) : 0;
  if (limit && limit < store->max)
    store->max = limit;
  store->idle = uow__calloc(store->max, sizeof(*store->idle));
  uow_store **slot = store->idle ? uow__vec_push(&env->stores, sizeof(*slot)) : NULL;
  if (!slot) {
    rc = UOW_ENOMEM; /* rc still holds open's 0 */
    goto fail;
  }
  store->index = env->stores.len - 1;
  *slot = store;
  return UOW_OK;
fail:
  uow__env_fail(env, rc, "add store '%s': out of memory", name);
fail_quiet:
  store_close(store);
  return rc;
}

static bool mapping_eq(const void *value, const void *key) {
  return ((const uow_mapping *)value)->entity == key;
}

static uint64_t entity_hash(const uow_entity *entity) {
  return uow__hash_u64((uint64_t)(uintptr_t)entity, 0x65);
}

const uow_mapping *uow__env_mapping(const uow_env *env, const uow_entity *entity) {
  return uow__map_get(&env->by_entity, entity_hash(entity), mapping_eq, entity);
}

static size_t member_size(uow_type type) {
  switch (type) {
  case UOW_INT64:
    return sizeof(int64_t);
  case UOW_DOUBLE:
    return sizeof(double);
  case UOW_TEXT:
    return sizeof(char *);
  case UOW_BLOB:
    return sizeof(uow_blob);
  case UOW_BOOL:
    return sizeof(bool);
  }
  return 0;
}

/* Everything the hot paths rely on is checked here, once. */
static int check_entity(uow_env *env, const uow_entity *e, size_t *key, size_t *version) {
  const char *name = e->name ? e->name : "?";
  if (!e->columns || !e->ncolumns || e->ncolumns > MAX_COLUMNS || !e->size)
    return uow__env_fail(env, UOW_EINVAL, "map %s: an entity needs 1 to %d columns", name,
                         MAX_COLUMNS);
  if (!uow__identifier_ok(e->table))
    return uow__env_fail(env, UOW_EINVAL,
                         "map %s: table name must be letters, digits and underscores", name);
  *key = SIZE_MAX;
  *version = SIZE_MAX;
  for (size_t i = 0; i < e->ncolumns; i++) {
    const uow_column *c = &e->columns[i];
    if (!uow__identifier_ok(c->name))
      return uow__env_fail(env, UOW_EINVAL,
                           "map %s: column %zu: name must be letters, digits and underscores", name,
                           i);
    if (c->type < UOW_INT64 || c->type > UOW_BOOL || member_size(c->type) != c->size ||
        c->offset > e->size || c->size > e->size - c->offset)
      return uow__env_fail(env, UOW_EINVAL,
                           "map %s: column %s: the member's size does not match its type", name,
                           c->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(e->columns[j].name, c->name) == 0)
        return uow__env_fail(env, UOW_EINVAL, "map %s: column %s appears twice", name, c->name);
    if (c->flags & UOW_PRIMARY_KEY) {
      if (*key != SIZE_MAX)
        return uow__env_fail(env, UOW_EINVAL, "map %s: more than one primary key", name);
      if (c->type != UOW_INT64 && c->type != UOW_TEXT)
        return uow__env_fail(env, UOW_EINVAL, "map %s: the primary key must be INT64 or TEXT",
                             name);
      if ((c->flags & UOW_GENERATED) && c->type != UOW_INT64)
        return uow__env_fail(env, UOW_EINVAL, "map %s: only an INT64 key can be generated", name);
      if (c->flags & UOW_NULLABLE)
        return uow__env_fail(env, UOW_EINVAL, "map %s: the primary key cannot be nullable", name);
      *key = i;
    } else if (c->flags & UOW_GENERATED) {
      return uow__env_fail(env, UOW_EINVAL, "map %s: column %s: only the key can be generated",
                           name, c->name);
    }
    if (c->flags & UOW_VERSION) {
      if (c->type != UOW_INT64 || *version != SIZE_MAX || (c->flags & UOW_PRIMARY_KEY))
        return uow__env_fail(env, UOW_EINVAL, "map %s: one INT64 version column at most", name);
      *version = i;
    }
    if (c->references) {
      /* Only a mapped entity's columns have been checked and can be read. */
      if (c->references != e && !uow__env_mapping(env, c->references))
        return uow__env_fail(env, UOW_EINVAL, "map %s: map the referenced entity %s first", name,
                             c->references->name ? c->references->name : "?");
      const uow_column *target = &c->references->columns[uow__entity_key_index(c->references)];
      if (target->type != c->type)
        return uow__env_fail(env, UOW_EINVAL, "map %s: column %s: its type differs from %s's key",
                             name, c->name, c->references->name);
      if (c->parent_offset != UOW_NO_MEMBER &&
          (c->parent_offset > e->size || e->size - c->parent_offset < sizeof(void *)))
        return uow__env_fail(env, UOW_EINVAL, "map %s: column %s: bad parent member", name,
                             c->name);
    }
  }
  if (*key == SIZE_MAX)
    return uow__env_fail(env, UOW_EINVAL, "map %s: no primary key column", name);
  return UOW_OK;
}

int uow_env_map(uow_env *env, const uow_entity *entity, const char *store_name) {
  if (!env)
    return UOW_EINVAL;
  if (!entity)
    return uow__env_fail(env, UOW_EINVAL, "map: no entity");
  if (!entity->name || !*entity->name)
    return uow__env_fail(env, UOW_EINVAL, "map: the entity has no name (build it with UOW_ENTITY)");
  int rc = setup_phase(env, "map", entity->name);
  if (rc)
    return rc;
  uow_store *store = uow__env_store(env, store_name);
  if (!store)
    return uow__env_fail(env, UOW_EINVAL, "map %s: no store named '%s'", entity->name,
                         store_name ? store_name : "(null)");
  if (uow__env_mapping(env, entity))
    return uow__env_fail(env, UOW_EINVAL, "map %s: already mapped", entity->name);
  size_t key = SIZE_MAX, version = SIZE_MAX;
  rc = check_entity(env, entity, &key, &version);
  if (rc)
    return rc;
  if ((store->ops->caps & UOW_STORE_INTENTS) && version == SIZE_MAX)
    return uow__env_fail(env, UOW_EINVAL,
                         "map %s: store '%s' cannot join a transaction, so its objects are "
                         "written after the commit and must never go back to an older state: "
                         "give %s a UOW_VERSION column",
                         entity->name, store_name, entity->name);
  unsigned depth = 0;
  for (size_t i = 0; i < entity->ncolumns; i++) {
    const uow_entity *target = entity->columns[i].references;
    if (!target || target == entity)
      continue;
    const uow_mapping *parent = uow__env_mapping(env, target);
    if (!parent)
      return uow__env_fail(env, UOW_EINVAL, "map %s: map the referenced entity %s first",
                           entity->name, target->name);
    if (parent->depth + 1 > depth)
      depth = parent->depth + 1;
  }
  uow_mapping *map = uow__calloc(1, sizeof(*map));
  uow_mapping **slot = map ? uow__vec_push(&env->mappings, sizeof(*slot)) : NULL;
  if (!slot) {
    uow__free(map);
    return uow__env_fail(env, UOW_ENOMEM, "map %s: out of memory", entity->name);
  }
  *slot = map;
  map->entity = entity;
  map->store = store;
  map->index = env->mappings.len - 1;
  map->key = key;
  map->version = version;
  map->depth = depth;
  for (size_t i = 0; i < entity->ncolumns; i++) {
    const uow_column *col = &entity->columns[i];
    map->parents |= col->references && col->parent_offset != UOW_NO_MEMBER;
    if (col->type == UOW_TEXT || col->type == UOW_BLOB)
      map->bytes |= UINT64_C(1) << i;
  }
  if (uow__map_put(&env->by_entity, entity_hash(entity), map)) {
    env->mappings.len--;
    uow__free(map);
    return uow__env_fail(env, UOW_ENOMEM, "map %s: out of memory", entity->name);
  }
  return UOW_OK;
}

bool uow__store_is_sql(const uow_store *store) {
  unsigned need = UOW_STORE_TRANSACTIONAL | UOW_STORE_SQL;
  return (store->ops->caps & need) == need;
}

int uow__store_transaction(uow_store *store, uow_store_conn *conn, unsigned flags, uow_txn_fn fn,
                           void *ctx, uow_status *st) {
  int rc = store->ops->begin(conn, UOW_ISOLATION_READ_COMMITTED, flags, st);
  if (!rc)
    rc = fn(store, conn, ctx, st);
  if (!rc)
    return store->ops->commit(conn, st);
  uow_status ignored = {0, ""};
  store->ops->rollback(conn, &ignored);
  return rc;
}

int uow__pooled_transaction(uow_store *store, uow_txn_fn fn, void *ctx, uow_status *st) {
  uow_store_conn *conn;
  bool reused;
  int rc = uow__pool_acquire(store, &conn, &reused, st);
  if (rc == UOW_OK &&
      (rc = store->ops->begin(conn, UOW_ISOLATION_READ_COMMITTED, 0, st)) == UOW_EIO && reused) {
    /* A pooled connection the server dropped while it was idle: one fresh try. */
    uow__pool_release(store, conn, false);
    if ((rc = uow__pool_acquire(store, &conn, &reused, st)) == UOW_OK)
      rc = store->ops->begin(conn, UOW_ISOLATION_READ_COMMITTED, 0, st);
  }
  if (rc != UOW_OK) {
    uow__pool_release(store, conn, false);
    return rc;
  }
  rc = fn(store, conn, ctx, st);
  if (rc == UOW_OK)
    rc = store->ops->commit(conn, st);
  else {
    uow_status ignored = {0, ""};
    store->ops->rollback(conn, &ignored);
  }
  uow__pool_release(store, conn, rc != UOW_EIO && rc != UOW_EINDOUBT);
  return rc;
}

static int create_tables(uow_env *env, uow_store *store) {
  uow_store_conn *conn = NULL;
  bool reused;
  uow_status st = {0, ""};
  int rc = uow__pool_acquire(store, &conn, &reused, &st);
  if (rc)
    return uow__env_fail(env, rc, "create schema: store '%s': %s", store->name, st.message);
  /* The library's tables first: an application may map a read-only view
   * entity onto one of them, and that must not create it with fewer columns. */
  if (uow__store_is_sql(store)) {
    rc = store->ops->create_table(conn, &uow__outbox_entity, &st);
    if (!rc)
      rc = store->ops->create_table(conn, &uow__decision_entity, &st);
    if (!rc)
      rc = store->ops->create_table(conn, &uow__lease_entity, &st);
    /* The relay looks for pending events, and for earlier ones of the same key. */
    if (!rc)
      rc = store->ops->exec(conn,
                            "CREATE INDEX IF NOT EXISTS uow_outbox_pending ON uow_outbox "
                            "(state, kind, id)",
                            NULL, 0, NULL, &st);
    if (!rc)
      rc = store->ops->exec(conn,
                            "CREATE INDEX IF NOT EXISTS uow_outbox_key ON uow_outbox "
                            "(event_key, state, id)",
                            NULL, 0, NULL, &st);
  }
  for (size_t i = 0; i < env->mappings.len && !rc; i++) {
    const uow_mapping *map = UOW_VEC_AT(&env->mappings, uow_mapping *, i);
    if (map->store == store)
      rc = store->ops->create_table(conn, map->entity, &st);
  }
  uow__pool_release(store, conn, rc == UOW_OK);
  if (rc)
    return uow__env_fail(env, rc, "create schema: store '%s': %s", store->name, st.message);
  return UOW_OK;
}

int uow_env_create_schema(uow_env *env) {
  if (!env)
    return UOW_EINVAL;
  for (size_t i = 0; i < env->stores.len; i++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, i);
    /* A store that cannot join a transaction keeps no schema, and may be down. */
    if (!store->ops->create_table || (store->ops->caps & UOW_STORE_INTENTS))
      continue;
    int rc = create_tables(env, store);
    if (rc)
      return rc;
  }
  return UOW_OK;
}

int uow__pool_acquire(uow_store *store, uow_store_conn **conn, bool *reused, uow_status *st) {
  pthread_mutex_lock(&store->lock);
  while (!store->nidle && store->open >= store->max)
    pthread_cond_wait(&store->available, &store->lock);
  if (store->nidle) {
    *conn = store->idle[--store->nidle];
    pthread_mutex_unlock(&store->lock);
    *reused = true;
    if (!store->ops->healthy || store->ops->healthy(*conn))
      return UOW_OK;
    /* The server restarted or the connection broke while idle: replace it. */
    store->ops->disconnect(*conn);
  } else {
    store->open++;
    pthread_mutex_unlock(&store->lock);
  }
  *reused = false;
  int rc = store->ops->connect(store->driver, conn, st);
  if (rc) {
    *conn = NULL;
    pthread_mutex_lock(&store->lock);
    store->open--;
    pthread_cond_signal(&store->available);
    pthread_mutex_unlock(&store->lock);
  }
  return rc;
}

void uow__pool_release(uow_store *store, uow_store_conn *conn, bool keep) {
  if (!conn)
    return;
  if (keep && store->ops->healthy && !store->ops->healthy(conn))
    keep = false;
  if (!keep)
    store->ops->disconnect(conn);
  pthread_mutex_lock(&store->lock);
  if (keep)
    store->idle[store->nidle++] = conn;
  else
    store->open--;
  pthread_cond_signal(&store->available);
  pthread_mutex_unlock(&store->lock);
}
