/*
 * core.h - the core's internal structures: the environment with its stores
 * and connection pools, the unit with its tracked records, and the functions
 * the core's files share. The core reaches databases only through
 * include/uow/store.h.
 */
#ifndef UOW_CORE_H
#define UOW_CORE_H

#include <pthread.h>

#include "util/util.h"

/* ---- environment (env.c) ---- */

/* Stores per environment: units keep sets of them as 64-bit masks. */
#define UOW__STORES_MAX 64
/* Bytes in a store's name: two of them go into a two-phase commit gid. */
#define UOW__STORE_NAME_MAX 64

typedef struct uow_store {
  char *name;
  char *url; /* redacted: safe to print */
  size_t index;
  const uow_store_ops *ops;
  uow_store_driver *driver;
  /* the connection pool */
  pthread_mutex_t lock;
  pthread_cond_t available;
  uow_store_conn **idle;
  size_t nidle;
  unsigned open;
  unsigned max;
  /* Decision records of units that finished (every participant committed),
   * deleted in this store's next decider transaction; guarded by `lock`. */
  uow_vec finished; /* char * */
  /* The relay's last claim of events ([0]) and of intents ([1]) on this
   * store found fewer heads than its batch: the next looks for them key by
   * key (FIRSTS in relay.c). A hint, read and written atomically by any
   * relay of the environment. */
  bool few_heads[2];
  /* When a relay of the environment last purged this store's delivered
   * events (uow__now_ms), read and written atomically: relay.c purges at most
   * once a minute. */
  int64_t purged_at;
} uow_store;

/* An entity mapped to a store, with what the core derives from its columns. */
typedef struct uow_mapping {
  const uow_entity *entity;
  uow_store *store;
  size_t index;   /* order of mapping: sorts updates and deletes */
  size_t key;     /* index of the primary key column */
  size_t version; /* index of the version column, or SIZE_MAX */
  unsigned depth; /* 0 for an entity that references nothing; parents are shallower */
  bool parents;   /* a reference column has a parent pointer member */
  uint64_t bytes; /* bit i: column i is text or a blob, whose bytes live apart */
} uow_mapping;

struct uow_env {
  uow_env_options opts;
  uow_vec stores;   /* uow_store * */
  uow_vec mappings; /* uow_mapping * */
  uow_map by_entity;
  pthread_mutex_t lock; /* guards errmsg, the unit free list and unit ids */
  uow_unit *free_units;
  uint64_t unit_seq;
  uint64_t nonce;
  /* Prepared transactions this process could not finish (a connection was
   * lost): settled at the next uow_begin, like uow_recover() would. */
  uow_vec doubts; /* char *gid; guarded by lock */
  size_t ndoubts; /* doubts.len, read without the lock */
  /* Units begun and not ended (atomic; lowered under lock): while there are
   * any, the set-up calls are refused, since a unit sizes its store table at
   * uow_begin. */
  size_t open_units;
  /* uow_env_close was called with units open (guarded by lock): the last of
   * them to end closes the environment. */
  bool closing;
  char errmsg[1024];
};

const uow_mapping *uow__env_mapping(const uow_env *env, const uow_entity *entity);
uow_store *uow__env_store(const uow_env *env, const char *name);
/* Close the environment and free it, now that no unit is open (uow_env_close). */
void uow__env_free(uow_env *env);
int uow__env_fail(uow_env *env, int code, const char *fmt, ...) UOW_PRINTF(3, 4);
/* Take a connection from the store's pool (may connect); `reused` says whether it was idle. */
int uow__pool_acquire(uow_store *store, uow_store_conn **conn, bool *reused, uow_status *st);
/* Give a connection back; a connection that is not healthy is closed instead. */
void uow__pool_release(uow_store *store, uow_store_conn *conn, bool keep);
/* A transactional SQL store: it holds the library's tables (outbox, decisions, lease). */
bool uow__store_is_sql(const uow_store *store);
/* Work done inside one of the library's own short transactions. */
typedef int (*uow_txn_fn)(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st);
/* Run `fn` in a READ COMMITTED transaction on `conn` (`flags`: UOW_FOR_UPDATE);
 * commit when it succeeds, roll back when it fails. */
int uow__store_transaction(uow_store *store, uow_store_conn *conn, unsigned flags, uow_txn_fn fn,
                           void *ctx, uow_status *st);
/* The same on a pooled connection, taken and given back here, with one fresh
 * try when an idle one turns out dead. */
int uow__pooled_transaction(uow_store *store, uow_txn_fn fn, void *ctx, uow_status *st);

/* The library's own tables, described as entities (outbox.c). */
typedef struct uow_outbox_row {
  int64_t id;
  char *unit_id;
  int64_t seq;
  char *kind;
  char *topic;
  char *event_key;
  uow_blob payload;
  int64_t created_at;
  int64_t state;
  int64_t attempts;
  int64_t next_attempt_at;
  int64_t delivered_at;
  char *last_error;
} uow_outbox_row;
extern const uow_entity uow__outbox_entity;

typedef struct uow_decision_row {
  char *unit_id;
  char *outcome;      /* "commit" or "abort" */
  char *participants; /* names of the prepared stores, comma-separated */
  int64_t created_at;
} uow_decision_row;
extern const uow_entity uow__decision_entity;

typedef struct uow_lease_row {
  char *name;   /* "outbox" */
  char *holder; /* the relay holding it */
  int64_t expires_at;
} uow_lease_row;
extern const uow_entity uow__lease_entity;

/* ---- unit (unit.c, tracker.c, flush.c) ---- */

/* An intent for a store that cannot join a transaction (intent.c). */
typedef struct uow_pending_intent {
  uow_store *store;
  uow_intent intent;
} uow_pending_intent;

typedef enum uow_record_state {
  UOW_REC_NEW = 1, /* created in this unit, not inserted yet */
  UOW_REC_CLEAN,   /* in the store; may have unflushed changes */
  UOW_REC_DELETED, /* in the store, marked for deletion */
  UOW_REC_GONE     /* deleted from the store, or a new object dropped by a rollback */
} uow_record_state;

/* A tracked object: this header, then the user's struct (UOW_RECORD_HEADER
 * bytes on). A unit has one per object, so it is kept to 32 bytes on 64-bit
 * systems. A pointer the user passes is taken for an object of the unit only
 * when the unit's record list has this header at its `seq` (uow__record_of). */
typedef struct uow_record {
  const uow_mapping *map;
  void *snapshot;     /* the struct as the store has it; NULL while new */
  uint32_t seq;       /* creation order: unit->records[seq] is this record */
  unsigned undo_mark; /* serial of the savepoint that already saved this record */
  unsigned visit;     /* flush planning mark */
  uint8_t state;      /* uow_record_state */
  bool in_map;        /* in the identity map, under the hash of its snapshot's key */
} uow_record;

_Static_assert(sizeof(uow_record) <= 32, "a tracked object's header stays within 32 bytes");

/* Bytes from a record to its object: the same for every entity, and a
 * multiple of the arena's alignment, so that the object is as aligned. */
#define UOW_RECORD_HEADER ((sizeof(uow_record) + 15) & ~(size_t)15)

typedef struct uow_event {
  char *topic;
  char *key;
  void *payload;
  size_t len;
} uow_event;

typedef struct uow_hook {
  uow_hook_fn fn;
  void *arg;
} uow_hook;

typedef struct uow_savepoint_mark {
  unsigned serial;
  size_t records;
  size_t events;
  size_t hooks;
  size_t undo;
} uow_savepoint_mark;

/* What a record was before the innermost savepoint changed it. */
typedef struct uow_undo {
  uow_record *record;
  uow_record_state state;
  void *snapshot;
  bool in_map;
} uow_undo;

/* A unit's use of one store. */
typedef struct uow_unit_store {
  uow_store *store;
  uow_store_conn *conn;
  bool in_txn;
  bool wrote;
  bool reused;   /* the connection came from the pool idle list */
  bool proven;   /* a statement succeeded on it in this unit */
  bool prepared; /* two-phase commit: its part is prepared, awaiting the decision */
} uow_unit_store;

typedef enum uow_unit_state {
  UOW_UNIT_ACTIVE = 1,
  UOW_UNIT_FAILED, /* a flush or statement failed: rollback (or rollback_to) needed */
  UOW_UNIT_COMMITTED,
  UOW_UNIT_ROLLED_BACK,
  UOW_UNIT_ENDED
} uow_unit_state;

/* What a flush allocates, kept by the unit for its next flush and for the
 * next unit begun on its environment (flush.c), so that a small flush asks
 * the allocator for nothing. */
typedef struct uow_flush_memory {
  uow_vec ops, updating, deleting, intending; /* uow_record * */
  uow_vec writes, owners, replaced;           /* the pending batch's */
  uow_arena scratch;
} uow_flush_memory;
void uow__flush_memory_init(uow_flush_memory *m);
void uow__flush_memory_free(uow_flush_memory *m);

struct uow_unit {
  uint32_t magic;
  uow_unit_state state;
  uow_env *env;
  uow_unit *next_free;
  uow_begin_options opts;
  char id[48];
  uow_arena arena;
  uow_vec records; /* uow_record *, creation order */
  uow_map identity;
  uow_unit_store *stores; /* one per env store */
  size_t nstores;
  uow_vec events;     /* uow_event */
  uow_vec hooks;      /* uow_hook */
  uow_vec savepoints; /* uow_savepoint_mark */
  uow_vec undo;       /* uow_undo */
  unsigned sp_serial;
  unsigned visit_serial;
  unsigned failed_depth; /* savepoint depth when the unit failed */
  bool committing;       /* inside uow_commit: a failure there rolls everything back */
  uow_store *outbox;     /* the store the commit wrote the outbox rows to */
  uow_vec cleanup;       /* char *: finished decisions this commit deletes in its decider */
  uow_vec intents;       /* uow_pending_intent: built at commit, applied after it */
  /* The writes uow_send left in flight on stores[sent_store]: their records
   * took their new state when they were sent; the store reads the replies
   * at its next call (uow__unit_settle, or the next flush's first write). */
  uow_vec sent; /* uow_write */
  size_t sent_store;
  size_t send_from; /* records before this index were planned by a uow_send */
  /* Whether a record may be other than a new object of an entity that
   * references nothing, in a store that joins transactions (something was
   * loaded, deleted, flushed or referenced): until then a flush plans every
   * record as an INSERT without looking at them. */
  bool mixed;
  uint64_t new_stores;           /* bit i: a new object lives in stores[i] */
  const uow_mapping *last_map;   /* the mapping mapping() found last (the env's, stable) */
  uow_flush_memory flush_memory; /* empty between flushes */
  char errmsg[1024];
};

#define UOW_UNIT_MAGIC 0x756f7775u
/* Bytes of arena a finished unit keeps for the next unit begun on its
 * environment (its lists, its identity map and its flushes' scratch memory
 * keep up to UOW_UNIT_KEEP_LIST each): a service running the same units again
 * and again then reuses warm pages instead of faulting in fresh ones (a
 * 20,000-row load spent a fifth of its CPU time on page faults). */
#define UOW_UNIT_KEEP_BYTES ((size_t)8 << 20)
#define UOW_UNIT_KEEP_LIST (UOW_UNIT_KEEP_BYTES / 16)
/* Free what a unit on the free list kept (uow_env_close). */
void uow__unit_memory_free(uow_unit *unit);

/* Messages and state. */
int uow__unit_fail(uow_unit *unit, int code, const char *fmt, ...) UOW_PRINTF(3, 4);
int uow__unit_error(uow_unit *unit, int code, const char *fmt, ...) UOW_PRINTF(3, 4);
int uow__unit_store_error(uow_unit *unit, const char *what, const uow_unit_store *us,
                          const uow_status *st);
/* Read the replies to the writes uow_send left in flight; with `report`,
 * a failure among them fails the unit as a failed flush does. */
int uow__unit_settle(uow_unit *unit, bool report);
/* The unit's connection to a store, in a transaction (joins lazily); the
 * writes uow_send left in flight are settled first. */
int uow__unit_join(uow_unit *unit, uow_store *store, unsigned flags, uow_unit_store **out);

/* Tracker (tracker.c). */
static inline void *uow__record_object(const uow_record *rec) {
  return (char *)rec + UOW_RECORD_HEADER;
}
uow_record *uow__record_of(uow_unit *unit, void *object);
/* A new record with its object zeroed, and `extra` bytes of the unit's
 * memory after the object for the caller (not zeroed). Inline: uow_new and
 * every row a read loads make one. */
static inline uow_record *uow__record_new(uow_unit *unit, const uow_mapping *map, size_t extra) {
  if (unit->records.len >= UINT32_MAX)
    return NULL; /* seq is 32 bits: over 4 billion objects would not fit in memory anyway */
  uow_record **slot = uow__vec_push(&unit->records, sizeof(*slot));
  if (!slot)
    return NULL;
  size_t size = UOW_RECORD_HEADER + map->entity->size;
  uow_record *rec = size + extra >= size ? uow__arena_alloc_raw(&unit->arena, size + extra) : NULL;
  if (!rec) {
    unit->records.len--;
    return NULL;
  }
  memset(rec, 0, size);
  rec->map = map;
  rec->seq = (uint32_t)(unit->records.len - 1);
  *slot = rec;
  return rec;
}
uow_record *uow__identity_get(uow_unit *unit, const uow_mapping *map, const uow_value *key);
int uow__identity_add(uow_unit *unit, uow_record *rec);
void uow__identity_remove(uow_unit *unit, uow_record *rec);
/* Save what a record is before a change, when a savepoint needs it: with
 * one open (uow__record_save); inline, as most units have none. */
int uow__record_save(uow_unit *unit, uow_record *rec);
static inline int uow__record_touch(uow_unit *unit, uow_record *rec) {
  return unit->savepoints.len ? uow__record_save(unit, rec) : UOW_OK;
}
/* Copy the object as it is now into a new snapshot. */
int uow__record_snapshot(uow_unit *unit, uow_record *rec);
/* Set a member from a store value, copying text and blobs into the unit. */
int uow__member_set(uow_unit *unit, const uow_column *col, void *object, const uow_value *value);
/* Which columns differ from the snapshot. */
uint64_t uow__record_changes(const uow_record *rec);
/* Read rows into tracked objects: their objects go to `rows` (may be NULL), the
 * first one to `first` (may be NULL). UOW_ENOTFOUND when `rows` is NULL and no row came. */
int uow__load(uow_unit *unit, const uow_mapping *map, const char *where, const uow_value *params,
              size_t nparams, unsigned flags, uow_vec *rows, uow_record **first);
/* One read of uow__load_many: the arguments of uow__load, and what it found. */
typedef struct uow_load {
  const uow_mapping *map;
  const char *where;
  const uow_value *params;
  size_t nparams;
  unsigned flags;
  uow_value key;     /* a get: the key, which `params` points to */
  uow_vec rows;      /* a find: the objects read */
  bool find;         /* a find (rows), else a get (first) */
  bool answered;     /* no read: the identity map or an earlier get answers it */
  size_t like;       /* answered by the get of loads[like - 1] (same key); 0: not */
  uow_record *first; /* the record of the first row (or the one the map had) */
  size_t item;       /* the uow_fetch item it answers, for messages */
  int rc;            /* output: the failure of uow__load_many, on the read it concerns */
} uow_load;
/* Run every load of `loads` in `store` that is not answered, in order, in one
 * batch where the store can (its read_many), else one read at a time. A
 * failure names the item of the read it concerns and fails the unit as
 * uow__load does. */
int uow__load_many(uow_unit *unit, uow_store *store, uow_load *loads, size_t n);

/* Flush (flush.c): write pending changes; with `commit`, also the outbox and COMMIT. */
int uow__flush(uow_unit *unit, bool commit);
/* uow_send: the INSERTs of new objects made since the last send, on stores
 * that write ahead, the last slice left in flight (unit->sent). */
int uow__send(uow_unit *unit);

/* ---- intents (intent.c): stores that cannot join a transaction ---- */

/* The intent of a tracked object: every field at `version`, or a delete
 * (taken from the snapshot). Text lives in the unit's arena. */
int uow__intent_build(uow_unit *unit, uow_record *rec, bool del, int64_t version, uow_intent *out);
/* An intent as an outbox payload, and back (decoded strings in `arena`). */
int uow__intent_encode(const uow_intent *in, uow_buf *out);
int uow__intent_decode(const void *data, size_t len, uow_arena *arena, uow_intent *out);
/* After the commit: apply the unit's intents and mark their outbox rows (in
 * `outbox`) delivered; what fails is left to the relay. */
void uow__intents_apply(uow_unit *unit, uow_store *outbox);
/* The relay's sink for intent rows: applies them to the store named by each topic. */
void uow__intent_sink(uow_env *env, uow_sink *out);

/* ---- coordinator (coord.c): two-phase commit across stores, recovery ---- */

/* Every prepared transaction of libuow has a gid starting so (see coord.c). */
#define UOW__GID_PREFIX "uow1:"

/* The parts of a gid, "uow1:<unit>:<decider>:<participant>". */
typedef struct uow_gid_parts {
  char unit_id[64];
  char decider[UOW__STORE_NAME_MAX];
  char participant[UOW__STORE_NAME_MAX];
} uow_gid_parts;
/* Split a gid; false for a gid of another format. */
bool uow__gid_parse(const char *gid, uow_gid_parts *out);

/* Check that the stores in `writers` (bit i: env store i) may take part in one
 * unit, and pick its decider: NULL when at most one store writes. Fails the
 * unit with UOW_EMISUSE, before anything is sent, when they may not. */
int uow__coord_plan(uow_unit *unit, uint64_t writers, uow_store **decider);
/* The stores the unit has written to so far, as a mask for uow__coord_plan. */
uint64_t uow__coord_writers(const uow_unit *unit);
/* Prepare every written store but the decider; on failure roll back those
 * prepared and fail the unit. */
int uow__coord_prepare(uow_unit *unit, uow_store *decider);
/* The decision row for the decider's transaction (in the unit's arena). */
uow_decision_row *uow__coord_decision(uow_unit *unit, int64_t now);
/* In the decider's transaction: delete the decision records of units that
 * finished earlier (taken from the store's queue into unit->cleanup). */
int uow__coord_cleanup(uow_unit *unit, uow_unit_store *decider);
/* After the decider committed: commit every prepared store (a failure is left
 * to uow_recover: the unit has committed) and queue the decision for deletion. */
void uow__coord_finish(uow_unit *unit, uow_store *decider);
/* The decider did not commit: roll the prepared stores back (unless the
 * outcome is unknown) and give the cleanup work back to the queue. */
void uow__coord_abort(uow_unit *unit, uow_store *decider, bool in_doubt);
/* Remember a prepared transaction this process left behind. */
void uow__coord_doubt(uow_env *env, const char *gid);
/* Settle the prepared transactions remembered by uow__coord_doubt (recover.c);
 * called by uow_begin while the unit holds no connection, so that a unit
 * retried after a lost connection does not wait on its own earlier locks. */
void uow__coord_settle_doubts(uow_env *env);
/* True while `store` holds a prepared transaction this process could not settle
 * yet: a unit must not join it, or it could wait forever on that one's locks. */
bool uow__coord_store_in_doubt(uow_env *env, const uow_store *store);
/* Delete queued decision records of every store (at uow_env_close). */
void uow__coord_drain(uow_env *env);
/* Crash points for the crash tests: with UOW_CRASH_POINTS compiled in, end the
 * process at once (SIGKILL) when UOW_CRASH_AT names this point ("name" or
 * "name@N" for the Nth time it is reached). `index` > 0 is appended: "_1". */
void uow__crash_point(const char *name, unsigned index);

#endif /* UOW_CORE_H */
