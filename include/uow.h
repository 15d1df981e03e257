/*
 * uow.h - libuow, units of work for C.
 *
 * A unit of work reads entities (plain C structs described by a static column
 * table), lets the caller change their fields directly, records events and
 * commits everything at once: all or nothing, across the stores it touched.
 *
 * Conventions used by every function in this header:
 *  - Functions return 0 on success or a negative UOW_E* code; the codes are
 *    never renumbered. The message for the last failure lives on the handle:
 *    uow_errmsg() for a unit, uow_env_errmsg() for an environment.
 *  - Outputs are the last parameters.
 *  - Close, end and free functions return void and accept NULL.
 *  - Options are structs whose first member is `version`; initialise them
 *    with their UOW_..._OPTIONS_INIT macro. A NULL options pointer means the
 *    defaults.
 *  - Threads: a uow_env is shared by any number of threads once it is set up
 *    (stores added, entities mapped); a uow_unit belongs to one thread at a
 *    time. See docs/threading.md.
 */
#ifndef UOW_H
#define UOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define UOW_API __attribute__((visibility("default")))
#else
#define UOW_API
#endif

/** Library version as a number: major * 10000 + minor * 100 + patch. */
#define UOW_VERSION_NUMBER 100
/** Library version as a string. */
#define UOW_VERSION_STRING "0.1.0"

/**
 * @defgroup errors Error codes
 * Every function that can fail returns 0 or one of these. They are never
 * renumbered; new codes are added at the end.
 * @{
 */
#define UOW_OK 0         /**< Success. */
#define UOW_ENOTFOUND -1 /**< No entity with that key. */
/** Stale version, serialization failure, deadlock or lock timeout: retry the unit. */
#define UOW_ECONFLICT -2
#define UOW_ECONSTRAINT -3 /**< Unique, foreign key, not-null or check constraint. */
/** Out of order: commit twice, use after end, use of a failed unit. */
#define UOW_EMISUSE -4
#define UOW_EINVAL -5 /**< Bad argument, mapping or URL. */
#define UOW_ENOMEM -6 /**< An allocation failed; nothing was written. */
#define UOW_EIO -7    /**< Store unreachable, connection lost, I/O error. */
/** The outcome of a commit is unknown to this process (the connection was lost
 * while COMMIT was in flight): check the store before running the unit again. */
#define UOW_EINDOUBT -8
/** @} */

/** @defgroup model Entities and columns
 * @{ */

/** Column types. The C member type each one maps to is given. */
typedef enum uow_type {
  UOW_INT64 = 1, /**< int64_t */
  UOW_DOUBLE,    /**< double */
  UOW_TEXT,      /**< char * (NUL-terminated UTF-8; NULL is SQL NULL) */
  UOW_BLOB,      /**< uow_blob (data NULL is SQL NULL) */
  UOW_BOOL       /**< bool */
} uow_type;

/** The primary key (exactly one column; UOW_INT64 or UOW_TEXT). */
#define UOW_PRIMARY_KEY 0x01u
/** A unique constraint on this column. */
#define UOW_UNIQUE 0x02u
/**
 * The column accepts NULL. For UOW_TEXT and UOW_BLOB a NULL pointer is NULL.
 * For UOW_INT64, UOW_DOUBLE and UOW_BOOL the value 0 is stored as NULL and a
 * stored NULL reads as 0.
 */
#define UOW_NULLABLE 0x04u
/** Optimistic concurrency: starts at 1, checked and bumped by every write. UOW_INT64 only. */
#define UOW_VERSION 0x08u
/** The store assigns the primary key at insert; it is written back into the struct. */
#define UOW_GENERATED 0x10u

/** A UOW_BLOB member. The bytes loaded by a unit belong to the unit. */
typedef struct uow_blob {
  const void *data; /**< The bytes; NULL is SQL NULL. */
  size_t size;      /**< Number of bytes. */
} uow_blob;

struct uow_entity;

/**
 * One column of an entity: built with UOW_COLUMN or UOW_REFERENCE, never by
 * hand. Descriptor tables are static data: the library keeps pointers to them
 * for as long as the environment lives.
 */
typedef struct uow_column {
  const char *name;                    /**< Column and member name. */
  uow_type type;                       /**< Column type. */
  unsigned flags;                      /**< UOW_PRIMARY_KEY, UOW_UNIQUE, ... */
  size_t offset;                       /**< offsetof() the member. */
  size_t size;                         /**< sizeof() the member, checked at mapping. */
  const struct uow_entity *references; /**< Referenced entity, or NULL. */
  size_t parent_offset; /**< offsetof() the parent pointer member, or UOW_NO_MEMBER. */
} uow_column;

/** parent_offset of a reference that has no parent pointer member. */
#define UOW_NO_MEMBER ((size_t)-1)

/** An entity: a C struct, its table and its columns. Build with UOW_ENTITY. */
typedef struct uow_entity {
  const char *name;          /**< The struct's name, used in messages. */
  const char *table;         /**< Table (or key prefix) in the store. */
  size_t size;               /**< sizeof() the struct. */
  const uow_column *columns; /**< The column table. */
  size_t ncolumns;           /**< Number of columns. */
} uow_entity;

/* clang-format off: it breaks lines after the stringizing '#' of these macros */
/** Describe member `member` of struct `T` as a column of type `type` with `flags`. */
#define UOW_COLUMN(T, member, type, flags)                                                         \
  { #member, (type), (flags), offsetof(T, member), sizeof(((T *)0)->member), NULL, UOW_NO_MEMBER }

/**
 * Describe member `member` of `T` as a reference to entity `target`'s primary
 * key. `parent` names a member of `T` of type `pointer to target struct`: when
 * it points to an object tracked by the unit, the flush inserts that object
 * first and copies its (possibly generated) key into `member`.
 */
#define UOW_REFERENCE(T, member, type, parent, target, flags)                                      \
  {                                                                                                \
#member, (type), (flags), offsetof(T, member), sizeof(((T *)0)->member), &(target),            \
        offsetof(T, parent)                                                                        \
  }

/** A reference without a parent pointer member: it orders deletes and the schema only. */
#define UOW_REFERENCE_KEY(T, member, type, target, flags)                                          \
  {                                                                                                \
#member, (type), (flags), offsetof(T, member), sizeof(((T *)0)->member), &(target),            \
        UOW_NO_MEMBER                                                                              \
  }

/** Describe struct `T` stored in `table` with the column array `columns`. */
#define UOW_ENTITY(T, table, columns)                                                              \
  { #T, (table), sizeof(T), (columns), sizeof(columns) / sizeof((columns)[0]) }
/* clang-format on */

/**
 * A parameter or key value for uow_find() and uow_exec(). Build with uow_int64() and friends.
 * Values are always bound, never put into the SQL text. Text is taken by its
 * size, not up to a NUL. PostgreSQL refuses text that is not valid UTF-8 or
 * that holds a NUL byte (UOW_EINVAL, nothing written); SQLite stores the bytes
 * as given. No store takes a text or blob over 2 GiB (UOW_EINVAL).
 */
typedef struct uow_value {
  uow_type type; /**< Which member of `v` holds the value. */
  bool is_null;  /**< SQL NULL; `v` is ignored. */
  union {
    int64_t i; /**< UOW_INT64 */
    double d;  /**< UOW_DOUBLE */
    bool b;    /**< UOW_BOOL */
    struct {
      const void *data; /**< UOW_TEXT (not NUL-terminated necessarily) and UOW_BLOB */
      size_t size;      /**< Bytes. */
    } bytes;            /**< UOW_TEXT and UOW_BLOB */
  } v;                  /**< The value. */
} uow_value;

/** An integer parameter. */
static inline uow_value uow_int64(int64_t i) {
  uow_value value = {UOW_INT64, false, {0}};
  value.v.i = i;
  return value;
}
/** A floating point parameter. */
static inline uow_value uow_double(double d) {
  uow_value value = {UOW_DOUBLE, false, {0}};
  value.v.d = d;
  return value;
}
/** A boolean parameter. */
static inline uow_value uow_bool(bool b) {
  uow_value value = {UOW_BOOL, false, {0}};
  value.v.b = b;
  return value;
}
/** A text parameter (NUL-terminated; NULL is SQL NULL). Not copied: it must live until the call
 * returns. */
static inline uow_value uow_text(const char *s) {
  uow_value value = {UOW_TEXT, s == NULL, {0}};
  size_t n = 0;
  if (s)
    while (s[n])
      n++;
  value.v.bytes.data = s;
  value.v.bytes.size = n;
  return value;
}
/** A blob parameter. Not copied: it must live until the call returns. */
static inline uow_value uow_blob_value(const void *data, size_t size) {
  uow_value value = {UOW_BLOB, data == NULL, {0}};
  value.v.bytes.data = data;
  value.v.bytes.size = size;
  return value;
}
/** SQL NULL. */
static inline uow_value uow_null(void) {
  uow_value value = {UOW_INT64, true, {0}};
  return value;
}
/** @} */

/** @defgroup env Environment
 * @{ */

/** The process-wide setup: stores, mappings, connection pools. Opaque. */
typedef struct uow_env uow_env;
/** One unit of work. Opaque. */
typedef struct uow_unit uow_unit;

/** Options for uow_env_open(). */
typedef struct uow_env_options {
  int version;              /**< UOW_ENV_OPTIONS_VERSION */
  unsigned pool_size;       /**< Connections kept per store; 0 means 8. */
  const char *outbox_store; /**< Store that holds the outbox of units that wrote nowhere; NULL: the
                               first store added. */
  /** Version 2: the PostgreSQL store that decides units writing only to
   * stores that can prepare (PostgreSQL); NULL: the first of them, in the
   * order they were added. A unit that writes to SQLite is always decided there. */
  const char *decider_store;
} uow_env_options;
/** Current version of uow_env_options (1 is still accepted: no decider_store). */
#define UOW_ENV_OPTIONS_VERSION 2
/** Defaults for uow_env_options. */
#define UOW_ENV_OPTIONS_INIT                                                                       \
  { UOW_ENV_OPTIONS_VERSION, 0, NULL, NULL }

/**
 * Create an environment.
 * @param opts  options, or NULL for the defaults; copied.
 * @param out   receives the environment; close it with uow_env_close().
 * @return 0, UOW_EINVAL (bad options) or UOW_ENOMEM.
 * Threads: any thread.
 */
UOW_API int uow_env_open(const uow_env_options *opts, uow_env **out);

/**
 * Close an environment: closes every pooled connection and frees everything.
 * Accepts NULL.
 *
 * Units still open keep it open: they go on as usual (read, flush, commit,
 * roll back), and the last of them to end closes it in its uow_end(). Until
 * then uow_begin() on it fails with UOW_EMISUSE ("the environment is
 * closing"); once they have ended, `env` is freed. A unit never ended keeps
 * it open for good.
 * Threads: any thread. No other call on `env` may run at the same time or
 * come after it (but for the units it leaves open, and a uow_begin() that
 * they keep refused).
 */
UOW_API void uow_env_close(uow_env *env);

/**
 * Open a store from a URL and name it.
 *
 * URLs: `sqlite:PATH` (a file; when missing it is created 0600 whatever the umask,
 * and SQLite gives its -wal, -shm and -journal files the same mode; an existing
 * file keeps its mode), `sqlite::memory:`;
 * SQLite query options `?busy_timeout=MS&journal_mode=wal|delete&synchronous=full|normal`.
 * `postgresql://...` (a libpq URI or conninfo). `redis://[[user]:password@]host:port/db`
 * or `redis+unix://[[user]:password@]/path?db=N`: a store that cannot join a
 * transaction (entities mapped to it need a UOW_VERSION column; see
 * docs/guarantees.md). Other schemes come from uow_register_store().
 * SQL stores open one connection at once to check the URL; a Redis store only
 * checks the URL, so units can commit while Redis is down.
 * Names have 1 to 63 characters; an environment holds at most 64 stores.
 *
 * @param env   the environment (set-up phase: no units running).
 * @param name  the store's name, used by uow_env_map(), uow_exec() and messages; copied.
 * @param url   the URL; copied. Passwords in it never appear in messages.
 * @return 0; UOW_EINVAL (unknown scheme, bad URL, name taken); UOW_EIO
 *         (cannot connect; the message has the store's detail); UOW_ENOMEM;
 *         UOW_EMISUSE (a unit is open on the environment: it could not reach
 *         the new store).
 * Threads: set-up phase only.
 */
UOW_API int uow_env_add_store(uow_env *env, const char *name, const char *url);

/**
 * Map an entity to a store. The descriptor is checked: one primary key of type
 * UOW_INT64 or UOW_TEXT, member sizes matching their types and within the
 * struct, identifiers (table and columns) of 1 to 63 letters, digits and
 * underscores not starting with a digit, UOW_VERSION on a UOW_INT64 column
 * only, referenced entities mapped first. Nothing reaches a store before that.
 * @param entity static descriptor; it must outlive the environment.
 * @return 0; UOW_EINVAL (bad descriptor, unknown store, entity already mapped); UOW_ENOMEM;
 *         UOW_EMISUSE (a unit is open on the environment).
 * Threads: set-up phase only.
 */
UOW_API int uow_env_map(uow_env *env, const uow_entity *entity, const char *store);

/**
 * Create the tables of every mapped entity that does not exist yet, and the
 * library's own tables (outbox, decision records) in every store that can
 * hold them.
 * @return 0; UOW_EIO; UOW_ENOMEM; UOW_EINVAL (a store refused the DDL).
 * Threads: any, but not while units use the same tables.
 */
UOW_API int uow_env_create_schema(uow_env *env);

/**
 * The message of the last failure of a uow_env_* call or of uow_begin() on
 * this environment. Valid until the next such call on it. Never NULL.
 */
UOW_API const char *uow_env_errmsg(const uow_env *env);

/** @} */

/** @defgroup recovery Recovery and status
 * Units that wrote to several stores commit with two-phase commit: every store
 * but the decider prepares, then the decider commits the unit's decision record
 * (the commit point), then the prepared stores commit. A crash between those
 * steps leaves prepared transactions "in doubt"; uow_recover() settles them.
 * @{ */

/** Counts of what uow_recover() did. */
typedef struct uow_recover_report {
  int version;              /**< UOW_RECOVER_REPORT_VERSION; set by the caller. */
  size_t in_doubt;          /**< Prepared transactions of libuow found. */
  size_t committed;         /**< Committed: the decider holds the unit's commit decision. */
  size_t rolled_back;       /**< Rolled back: no commit decision (an abort record fences it). */
  size_t fenced;            /**< Abort records written by this call. */
  size_t decisions_removed; /**< Decision records removed: every participant had finished. */
  size_t skipped;           /**< Left alone (decider not in this environment, or unreachable). */
} uow_recover_report;
/** Current version of uow_recover_report. */
#define UOW_RECOVER_REPORT_VERSION 1
/** Initialiser for uow_recover_report. */
#define UOW_RECOVER_REPORT_INIT                                                                    \
  { UOW_RECOVER_REPORT_VERSION, 0, 0, 0, 0, 0, 0 }

/**
 * Settle every unit left in doubt by a crash or an outage, in every store of
 * the environment: a prepared transaction whose decider holds the commit
 * decision is committed; one without a decision is fenced (an abort record is
 * written in the decider, which waits for a decider transaction still in
 * flight and fails if that one committed) and rolled back. Finished decision
 * records are removed. No timeouts decide anything: a unit being committed at
 * the same moment either finishes or is aborted whole. Abort records are kept
 * for 7 days, so a committer that stalled is still fenced when it wakes up.
 *
 * @param env     the environment, with every store that takes part in
 *                multi-store units added (a unit whose decider is missing is
 *                skipped and counted).
 * @param report  receives the counts (its version set by the caller), or NULL.
 * @return 0 when every unit found was settled; UOW_EIO when a store could not
 *         be reached or a step failed (the message says which; what was done is
 *         counted, run it again); UOW_EINVAL (NULL env, bad report version);
 *         UOW_ENOMEM.
 * Threads: any; safe while units run and beside another uow_recover(), in this
 * process or another.
 */
UOW_API int uow_recover(uow_env *env, uow_recover_report *report);

/** What uow_env_status() tells of one store. Counts are -1 when unknown. */
typedef struct uow_store_status {
  const char *name;       /**< The store's name (owned by the environment). */
  const char *url;        /**< Its URL with any password hidden (owned by the environment). */
  const char *scheme;     /**< The driver's URL scheme, e.g. "sqlite" or "postgresql". */
  bool transactional;     /**< Units' writes to it are transactional. */
  bool can_prepare;       /**< It can take part in a multi-store unit as a prepared participant. */
  bool reachable;         /**< A connection and the queries below worked. */
  int64_t in_doubt;       /**< Prepared transactions of libuow waiting for uow_recover(). */
  int64_t decisions;      /**< Decision records it holds as a decider. */
  int64_t outbox_pending; /**< Outbox rows not delivered yet. */
  int64_t outbox_dead;    /**< Outbox rows that failed too often and were set aside. */
  char error[256];        /**< Why it is not reachable or a count is unknown; "" if fine. */
} uow_store_status;

/**
 * Report on every store of the environment: reachability, in-doubt units and
 * the outbox backlog. Stores whose library tables do not exist yet report
 * their counts as -1 with a note in `error`.
 * @param env    the environment.
 * @param out    array of `cap` entries to fill, in the order stores were added.
 * @param cap    its size; may be 0 to learn the count.
 * @param count  receives the number of stores in the environment.
 * @return 0 (even when a store is unreachable: see `reachable` and `error`);
 *         UOW_EINVAL (NULL env or count, NULL out with cap > 0); UOW_ENOMEM
 *         (the entries are filled as far as memory allowed; the message is on env).
 * Threads: any.
 */
UOW_API int uow_env_status(uow_env *env, uow_store_status *out, size_t cap, size_t *count);

/** @} */

/** @defgroup unit Units of work
 * @{ */

/** Isolation levels (honoured by stores that have them; SQLite is always serializable). */
typedef enum uow_isolation {
  UOW_ISOLATION_DEFAULT = 0,     /**< The store's default. */
  UOW_ISOLATION_READ_COMMITTED,  /**< READ COMMITTED */
  UOW_ISOLATION_REPEATABLE_READ, /**< REPEATABLE READ (snapshot) */
  UOW_ISOLATION_SERIALIZABLE     /**< SERIALIZABLE */
} uow_isolation;

/**
 * Flag for uow_get_ex(), uow_find_ex() and uow_begin_options.flags: lock what is
 * read for writing. PostgreSQL: SELECT ... FOR UPDATE. SQLite: the unit's
 * transaction starts with BEGIN IMMEDIATE (when it is the first access).
 */
#define UOW_FOR_UPDATE 0x01u

/** Options for uow_begin_ex(). */
typedef struct uow_begin_options {
  int version;             /**< UOW_BEGIN_OPTIONS_VERSION */
  uow_isolation isolation; /**< Isolation level. */
  unsigned flags; /**< UOW_FOR_UPDATE: every read locks its rows (SQLite: BEGIN IMMEDIATE). */
} uow_begin_options;
/** Current version of uow_begin_options. */
#define UOW_BEGIN_OPTIONS_VERSION 1
/** Defaults for uow_begin_options. */
#define UOW_BEGIN_OPTIONS_INIT                                                                     \
  { UOW_BEGIN_OPTIONS_VERSION, UOW_ISOLATION_DEFAULT, 0 }

/**
 * Begin a unit of work. Store transactions start lazily, on the first access to
 * each store.
 * @param out  receives the unit; end it with uow_end().
 * @return 0; UOW_EINVAL (NULL env or out, no store added, bad options: version
 *         or isolation level); UOW_ENOMEM; UOW_EMISUSE (uow_env_close() was
 *         called and units keep the environment open). The message is on the env.
 * Threads: any thread; the unit then belongs to one thread at a time.
 */
UOW_API int uow_begin(uow_env *env, uow_unit **out);

/** uow_begin() with options (NULL: defaults). Same returns. */
UOW_API int uow_begin_ex(uow_env *env, const uow_begin_options *opts, uow_unit **out);

/**
 * Load an entity by primary key through the identity map: the same key in the
 * same unit gives the same pointer, and the store is asked only once. A get
 * does not flush: a new object not flushed yet is not found by its key.
 * @param key  points to a value of the primary key's C type (int64_t *, or char ** for text keys).
 * @param out  receives the object; it belongs to the unit and lives until uow_end().
 * @return 0; UOW_ENOTFOUND (also for an object deleted in this unit); UOW_EINVAL
 *         (entity not mapped); UOW_EIO; UOW_ECONFLICT; UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_get(uow_unit *unit, const uow_entity *entity, const void *key, void **out);

/** uow_get() with flags (UOW_FOR_UPDATE). Same returns. An object the unit
 * already holds is returned without a new read, so it takes no new lock: lock
 * on the first read. */
UOW_API int uow_get_ex(uow_unit *unit, const uow_entity *entity, const void *key, unsigned flags,
                       void **out);

/**
 * Query entities with a where clause. Pending changes are flushed first so the
 * query sees them. `?` marks a parameter; parameters are always bound, never
 * interpolated. Rows for objects already in the unit return the unit's object,
 * unchanged.
 * @param where   SQL condition (may include ORDER BY / LIMIT), or NULL for all rows.
 * @param params  `nparams` values.
 * @param rows    receives an array of object pointers owned by the unit, valid until uow_end().
 * @param count   receives the number of rows.
 * @return 0 (also for no rows); UOW_EINVAL (bad SQL: the store's message);
 *         UOW_EIO; UOW_ECONFLICT; UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_find(uow_unit *unit, const uow_entity *entity, const char *where,
                     const uow_value *params, size_t nparams, void ***rows, size_t *count);

/** uow_find() with flags (UOW_FOR_UPDATE). Same returns. */
UOW_API int uow_find_ex(uow_unit *unit, const uow_entity *entity, const char *where,
                        const uow_value *params, size_t nparams, unsigned flags, void ***rows,
                        size_t *count);

/**
 * One read of uow_fetch(): a get by key (`key` not NULL), or a find (`key`
 * NULL). Build it with uow_fetch_get() or uow_fetch_find(): a field added
 * later is then zero, which keeps the meaning it had. The inputs, the
 * pointers to them included, are the caller's and must live until
 * uow_fetch() returns; nothing is kept.
 */
typedef struct uow_fetch_item {
  const uow_entity *entity; /**< What to read; mapped. */
  /** A get: points to a value of the primary key's C type, as for uow_get(). NULL: a find. */
  const void *key;
  const char *where;       /**< A find: as for uow_find(); NULL or "" for every row. A get: NULL. */
  const uow_value *params; /**< A find: `nparams` values. A get: NULL. */
  size_t nparams;          /**< A find: their count. A get: 0. */
  unsigned flags;          /**< UOW_FOR_UPDATE, as for uow_get_ex() and uow_find_ex(). */
  void **object;           /**< A get: receives the object, or NULL when there is none. */
  void ***rows;            /**< A find: receives the row array, as for uow_find(). */
  size_t *count;           /**< A find: receives the number of rows. */
  /** Set by uow_fetch(): 0, or UOW_ENOTFOUND for a get that found nothing (see uow_fetch()). */
  int rc;
} uow_fetch_item;

/** A get for uow_fetch(): what uow_get_ex(unit, entity, key, flags, out) reads. */
static inline uow_fetch_item uow_fetch_get(const uow_entity *entity, const void *key,
                                           unsigned flags, void **out) {
  uow_fetch_item item = {entity, key, NULL, NULL, 0, flags, out, NULL, NULL, 0};
  return item;
}

/** A find for uow_fetch(): what uow_find_ex(unit, entity, where, params, nparams, flags,
 * rows, count) reads. */
static inline uow_fetch_item uow_fetch_find(const uow_entity *entity, const char *where,
                                            const uow_value *params, size_t nparams, unsigned flags,
                                            void ***rows, size_t *count) {
  uow_fetch_item item = {entity, NULL, where, params, nparams, flags, NULL, rows, count, 0};
  return item;
}

/**
 * Run several reads with one round trip per store: the items that read the
 * same store are sent together. PostgreSQL gets them in one pipeline, where
 * the statements run in order, so a UOW_FOR_UPDATE item holds its lock before
 * the next item runs. SQLite runs them one after another (there is no round
 * trip to save). A store without batched reads (Redis, a store of store ABI 2)
 * is read once per item.
 *
 * The result is that of calling uow_get_ex() and uow_find_ex() for the items
 * in order: the same objects, identity map, locks, codes and messages. So a
 * get of an object the unit holds (or deleted) is answered without a read,
 * and then takes no new lock, even with UOW_FOR_UPDATE: lock on the first
 * read. Two gets of one key in one call read it once. What differs:
 *  - When any item is a find, pending changes are flushed first, once, before
 *    any item runs (uow_find() flushes too), so the gets see them as well: a
 *    get of the key of a new object finds it, where uow_get() alone does not.
 *  - A get of a key that a find earlier in the same call returns is read from
 *    the store too (and locked, when asked): which rows a find returns is not
 *    known before its reply. It still gets the unit's one object.
 *
 * @param unit   the unit.
 * @param items  `n` items. Their outputs are cleared first, then set: each
 *               get's object, each find's rows and count, and every `rc`.
 *               Objects and row arrays belong to the unit and stay valid
 *               until uow_end(); rows for objects already in the unit give
 *               the unit's object, unchanged.
 * @param n      how many items; at least 1.
 * @return 0 when every item succeeded.
 *         UOW_ENOTFOUND when every item ran but a get found no row (or an
 *         object deleted in this unit): that item's `rc` is UOW_ENOTFOUND and
 *         its object NULL, every other item is filled, the message names the
 *         first such item, and the unit goes on, as after uow_get().
 *         UOW_EINVAL for a bad argument, before anything is read or flushed,
 *         the unit staying active: NULL items, `n` 0, an entity not mapped,
 *         a get whose key value is NULL (a text key pointing to NULL), a
 *         NULL output, a get with a where clause or parameters, NULL params
 *         with `nparams`, a where clause for a store that cannot run queries.
 *         The message names the item: "fetch item 1 (find enrollment): ...".
 *         A failure from a store (UOW_EINVAL for a where clause the store
 *         refuses or a wrong number of parameters; UOW_EIO; UOW_ECONFLICT for
 *         a lock that cannot be taken) or from the flush fails the unit, as
 *         for uow_find(): it then accepts only uow_rollback(), uow_rollback_to()
 *         and uow_end(). The built-in SQL stores check every item's statement
 *         and parameter count before they run any, so such a bad item reads
 *         nothing. UOW_ENOMEM; UOW_EMISUSE (the unit is not active).
 *         On a failure other than UOW_ENOTFOUND every output is NULL or 0,
 *         and the item the message names, if it names one, has the code as
 *         its `rc`. Objects that items before the failing one read stay
 *         tracked by the unit.
 * Threads: the unit's thread (a unit belongs to one thread at a time).
 */
UOW_API int uow_fetch(uow_unit *unit, uow_fetch_item *items, size_t n);

/**
 * Create a new object, zeroed and tracked as new; it is inserted at flush.
 * @param out  receives the object, owned by the unit until uow_end().
 * @return 0; UOW_EINVAL (entity not mapped); UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_new(uow_unit *unit, const uow_entity *entity, void **out);

/**
 * Mark an object of this unit for deletion. Deleting a new object forgets it.
 * The memory stays valid until uow_end(). `object` must be a pointer this unit
 * returned (uow_get, uow_find, uow_new): the library reads a header in front
 * of it, so any other pointer is undefined behaviour.
 * @return 0; UOW_EINVAL (not an object of this unit); UOW_EMISUSE.
 */
UOW_API int uow_delete(uow_unit *unit, void *object);

/**
 * Copy a string into memory owned by the unit, for assigning to UOW_TEXT members.
 * @return the copy, valid until uow_end(); NULL when `s` is NULL or memory is short
 *         (then uow_errmsg() says so).
 */
UOW_API char *uow_strdup(uow_unit *unit, const char *s);

/**
 * Copy bytes into memory owned by the unit, for UOW_BLOB members.
 * @return a blob whose data lives until uow_end(); data NULL when memory is short,
 *         when `data` is NULL with `size` > 0, or when `size` is over 2 GiB (a
 *         negative count converted): uow_errmsg() says which.
 */
UOW_API uow_blob uow_blobdup(uow_unit *unit, const void *data, size_t size);

/**
 * Write pending changes to the stores now (commit does it anyway). On failure
 * the unit needs uow_rollback() (or uow_rollback_to() when a savepoint is open).
 * @return 0; UOW_ECONFLICT; UOW_ECONSTRAINT; UOW_EIO; UOW_ENOMEM; UOW_EMISUSE;
 *         UOW_EINVAL (a loaded key changed, new objects reference each other in a
 *         cycle, a parent pointer is not an object of this unit).
 */
UOW_API int uow_flush(uow_unit *unit);

/**
 * For bulk inserts: hand the new objects made since the last uow_send to the
 * stores that can write while the program goes on, and return without
 * waiting for the server's answer. Call it every thousand objects or so; the
 * server then inserts one batch while the program makes the next, instead of
 * starting on them all at commit.
 *
 * - Which stores: PostgreSQL (a store whose ABI has write_ahead). New objects
 *   of other stores (SQLite, which writes in the calling thread and would gain
 *   nothing; stores that cannot join a transaction), and new objects pointing
 *   to one of them as a new parent, are left to the next flush or commit, as
 *   if this call had not been made.
 * - Objects sent count as flushed: changes made to them afterwards are
 *   written as UPDATEs at the next flush or commit, uow_delete() deletes their
 *   row, uow_get() finds them by key. Each keeps a snapshot for that, as a
 *   loaded object does. Changes to loaded objects and deletions are not sent:
 *   they wait for the flush or commit.
 * - Keys the store generates: an object sent has its key when uow_send
 *   returns (the writes that wait for such keys complete before it returns).
 * - Failures: errors found before sending (those of uow_flush(): a cycle of
 *   new objects, a key already in the unit, a unit the commit could not
 *   commit) fail this call. A write the server refuses (a constraint, a lost
 *   connection) fails the next call that goes to that store (uow_send,
 *   uow_flush, uow_commit, a read, uow_exec, uow_savepoint, uow_release) with
 *   the write's code and message, and the unit then needs uow_rollback(), or
 *   uow_rollback_to() when a savepoint is open. uow_rollback(),
 *   uow_rollback_to() and uow_end() discard such writes with the rest.
 * - Nothing is committed before uow_commit(): the writes are in the unit's
 *   transaction, as with uow_flush().
 *
 * The writes sent keep their memory in the unit until the store has answered.
 * @return 0; UOW_ECONSTRAINT, UOW_ECONFLICT, UOW_EIO (writes sent earlier
 *         failed, or writes waiting for generated keys did); UOW_ENOMEM;
 *         UOW_EMISUSE; UOW_EINVAL (as for uow_flush()).
 * Threads: the unit's thread (a unit belongs to one thread at a time).
 */
UOW_API int uow_send(uow_unit *unit);

/**
 * Run a statement in the unit's transaction on a named store (the escape
 * hatch). Pending changes are flushed first. Objects already loaded are not
 * refreshed. One statement per call. A statement that ends the transaction
 * (COMMIT, ROLLBACK, END; PREPARE TRANSACTION on PostgreSQL) is refused with
 * UOW_EMISUSE once it ran: what it committed stays committed, and the unit
 * must be rolled back.
 * @param affected  receives the number of rows changed; may be NULL.
 * @return 0; UOW_EINVAL (unknown store, bad SQL, a second statement);
 *         UOW_ECONSTRAINT; UOW_ECONFLICT; UOW_EIO; UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_exec(uow_unit *unit, const char *store, const char *sql, const uow_value *params,
                     size_t nparams);

/** uow_exec() that also reports the number of rows the statement changed. */
UOW_API int uow_exec_ex(uow_unit *unit, const char *store, const char *sql, const uow_value *params,
                        size_t nparams, int64_t *affected);

/**
 * Record an event. It is written to the outbox in the unit's own transaction
 * at commit, and exists only if the unit commits (a rolled-back savepoint drops it).
 * The topic, key and payload are copied into the unit's memory, which
 * uow_end() frees (a dropped event's copies too).
 * @param topic    e.g. "enrollment.created"; copied.
 * @param key      events with the same key are delivered in commit order; may be NULL; copied.
 * @param payload  `len` bytes, copied.
 * @return 0; UOW_EINVAL (NULL or empty topic, NULL payload with `len` > 0, `len`
 *         over 2 GiB); UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_emit(uow_unit *unit, const char *topic, const char *key, const void *payload,
                     size_t len);

/** A callback run after a durable commit. */
typedef void (*uow_hook_fn)(void *arg);

/**
 * Run `fn(arg)` after the outermost commit is durable, in registration order,
 * on the committing thread. Dropped on rollback and with a rolled-back savepoint.
 * @return 0; UOW_EINVAL (NULL fn); UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_on_commit(uow_unit *unit, uow_hook_fn fn, void *arg);

/**
 * Open a savepoint (they nest). Pending changes are flushed first.
 * @return 0; the flush's codes; UOW_ENOMEM; UOW_EMISUSE.
 */
UOW_API int uow_savepoint(uow_unit *unit);

/**
 * Keep the work of the innermost savepoint and close it.
 * @return 0; UOW_EMISUSE (no savepoint open); UOW_EIO.
 */
UOW_API int uow_release(uow_unit *unit);

/**
 * Undo everything since the innermost savepoint and close it: store writes,
 * changes to tracked objects (their members are restored), objects created or
 * deleted, events and hooks. The unit stays usable, also after a failed flush.
 * @return 0; UOW_EMISUSE (no savepoint open); UOW_EIO.
 */
UOW_API int uow_rollback_to(uow_unit *unit);

/**
 * Flush, write the outbox and commit every store the unit touched, atomically.
 * Then the on-commit hooks run. After success the unit accepts only uow_end().
 * Savepoints still open are released: their work commits with the rest.
 * On failure nothing was written (except UOW_EINDOUBT) and the unit accepts only
 * uow_rollback() and uow_end().
 * A unit that wrote to more than one store commits with two-phase commit (see
 * uow_recover()): all its stores or none. It may write to at most one store
 * that cannot prepare (SQLite); a unit that would write to a second one, or to
 * a PostgreSQL server with max_prepared_transactions = 0 beside another store,
 * is refused with UOW_EMISUSE before that write is sent.
 * UOW_EINDOUBT: the decider's commit was cut off (a PostgreSQL connection lost
 * in flight, or in SQLite's WAL mode a failed sync of the log, whose commit
 * record a crash would leave to WAL recovery); uow_recover() settles the
 * unit later (all or nothing).
 * @return 0; UOW_ECONFLICT; UOW_ECONSTRAINT; UOW_EIO; UOW_ENOMEM;
 *         UOW_EINDOUBT (outcome unknown to this process); UOW_EMISUSE;
 *         UOW_EINVAL (as for uow_flush()).
 */
UOW_API int uow_commit(uow_unit *unit);

/**
 * Roll back every store transaction, drop events and hooks. Tracked objects
 * keep their memory until uow_end().
 * @return 0; UOW_EMISUSE (already committed or rolled back).
 */
UOW_API int uow_rollback(uow_unit *unit);

/** Roll back if not committed, return connections and free everything the unit owns. Accepts NULL.
 */
UOW_API void uow_end(uow_unit *unit);

/** The message of the unit's last failure, valid until its next call. Never NULL. */
UOW_API const char *uow_errmsg(const uow_unit *unit);

/** The environment the unit was begun on. */
UOW_API uow_env *uow_unit_env(const uow_unit *unit);

/** @} */

/** @defgroup run Running a unit with retries
 * @{ */

/** The body of a unit for uow_run(): return 0 to commit, anything else to roll back. */
typedef int (*uow_run_fn)(uow_unit *unit, void *arg);

/** Options for uow_run(). */
typedef struct uow_run_options {
  int version;             /**< UOW_RUN_OPTIONS_VERSION */
  unsigned max_attempts;   /**< Attempts for UOW_ECONFLICT; 0 means 10. */
  unsigned backoff_ms;     /**< First backoff; 0 means 2 ms. Doubles, with jitter. */
  unsigned max_backoff_ms; /**< Backoff cap; 0 means 250 ms. */
  uow_begin_options begin; /**< Options for each attempt's unit. */
} uow_run_options;
/** Current version of uow_run_options. */
#define UOW_RUN_OPTIONS_VERSION 1
/** Defaults for uow_run_options. */
#define UOW_RUN_OPTIONS_INIT                                                                       \
  { UOW_RUN_OPTIONS_VERSION, 0, 0, 0, UOW_BEGIN_OPTIONS_INIT }

/**
 * Begin a unit, call `fn(unit, arg)`, commit. A non-zero return from `fn` rolls
 * back and is returned as it is (use positive codes for your own errors). A
 * UOW_ECONFLICT from `fn` or from commit rolls back and runs `fn` again after a
 * backoff, up to max_attempts times. `fn` must not end the unit.
 * @return 0; fn's code; the unit's failure (message on the env).
 */
UOW_API int uow_run(uow_env *env, uow_run_fn fn, void *arg, const uow_run_options *opts);

/** @} */

/** @defgroup relay Outbox delivery: sinks and the relay
 * Events written with uow_emit() are rows of the outbox table, committed with
 * their unit. A relay reads them and hands them to a sink, at least once, in
 * commit order per key. Every delivery carries the event id, stable across
 * retries, so that consumers can drop duplicates.
 * @{ */

/** One outbox event handed to a sink. Every pointer is valid during the call only. */
typedef struct uow_delivery {
  const char *event_id; /**< "<store>:<outbox id>": unique, the same on every retry. */
  const char *store;    /**< The store whose outbox holds the event. */
  int64_t id;           /**< The outbox row id in that store. */
  const char *unit_id;  /**< The unit that emitted it. */
  int64_t seq;          /**< Its position among the unit's events (1, 2, ...). */
  const char *topic;    /**< The topic given to uow_emit(). */
  const char *key;      /**< The key given to uow_emit(), or NULL. */
  const void *payload;  /**< The payload bytes (may be NULL when payload_len is 0). */
  size_t payload_len;   /**< Their count. */
  int64_t created_at;   /**< When the unit committed it, ms since the epoch. */
  int64_t attempt;      /**< 1 on the first delivery, then 2, 3, ... */
} uow_delivery;

/**
 * Where a relay delivers events. Fill one for a sink of your own (Kafka,
 * HTTP, ...), or get one from uow_sink_redis_stream() or uow_sink_command().
 */
typedef struct uow_sink {
  int version;      /**< UOW_SINK_VERSION */
  const char *name; /**< For messages, e.g. "redis-stream". */
  /**
   * Deliver `n` events, in order. Return 0 when every one was taken.
   * Otherwise return a UOW_E* code, set `*delivered` to how many of the first
   * events were taken (they are marked delivered; the rest are retried with
   * backoff) and write a message into `err` (capacity `errcap`).
   * Threads: called from the relay's thread only, one call at a time.
   */
  int (*deliver)(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                 size_t errcap);
  /** Free `ctx` (uow_sink_close() calls it). May be NULL. */
  void (*destroy)(void *ctx);
  void *ctx; /**< The sink's own state. */
} uow_sink;
/** Current version of uow_sink. */
#define UOW_SINK_VERSION 1

/**
 * A sink that appends each event to a Redis stream with XADD, pipelined per
 * batch. Entry fields: event_id, topic, key (left out when the event has no
 * key), payload (binary-safe), unit_id, created_at. Consumers drop duplicates
 * by event_id. If Redis refuses one XADD of a batch (e.g. out of memory), the
 * ones after it may be in the stream already and come again on the retry.
 * @param url     `redis://[[user]:password@]host:port/db` or
 *                `redis+unix://[[user]:password@]/path/to/socket?db=N`; a
 *                password with `/` or `@` is percent-encoded. Passwords never
 *                appear in messages.
 * @param stream  the stream's key; copied.
 * @param out     receives the sink; release it with uow_sink_close(). It
 *                connects at its first delivery and again after any connection
 *                error, so a relay may start while Redis is away.
 * @return 0; UOW_EINVAL (bad URL or stream name); UOW_ENOMEM.
 * Threads: a sink is used by one relay at a time.
 */
UOW_API int uow_sink_redis_stream(const char *url, const char *stream, uow_sink *out);

/**
 * A sink that runs a command (`/bin/sh -c command`) for each batch and writes
 * one JSON object per event to its standard input, one per line:
 * `{"event_id":"main:7","topic":"user.registered","key":"42","unit_id":"...",
 * "seq":1,"created_at":1700000000000,"attempt":1,"payload":"...",
 * "payload_encoding":"utf8"}` — the payload as a JSON string when it is valid
 * UTF-8, else base64 with "payload_encoding":"base64"; "key" is null for an
 * event without a key. The batch counts as delivered when the command exits
 * with status 0. There is no time limit: a command that neither reads nor
 * exits holds the relay. A process that sets SIGCHLD to SIG_IGN cannot learn
 * the exit status, so every batch fails with UOW_EIO. Messages name the
 * command by its first word after any leading `NAME=value` assignments, which
 * are never quoted (they often carry credentials).
 * @param command  the shell command; copied.
 * @param out      receives the sink; release it with uow_sink_close().
 * @return 0; UOW_EINVAL (NULL or empty command); UOW_ENOMEM.
 * Threads: a sink is used by one relay at a time.
 */
UOW_API int uow_sink_command(const char *command, uow_sink *out);

/** Release a sink (calls its destroy function) and clear it. Accepts NULL. */
UOW_API void uow_sink_close(uow_sink *sink);

/** Options of a relay. Zero fields take the defaults in brackets. */
typedef struct uow_relay_options {
  int version;           /**< UOW_RELAY_OPTIONS_VERSION */
  const char *store;     /**< The store whose outbox to relay; NULL: every SQL store. */
  unsigned batch;        /**< Events claimed and delivered at once [100]. */
  unsigned max_attempts; /**< Failed deliveries before an event is dead [10]. */
  int64_t backoff_ms;    /**< Delay before the first retry, doubled each time, with jitter [500]. */
  int64_t backoff_max_ms; /**< Longest delay between retries [60000]. */
  int64_t retention_ms;   /**< Delivered events are purged this long after delivery [7 days], by
                             a pass at most once a minute per store (or once per retention
                             period, when shorter); < 0: never. */
  int64_t lease_ms;       /**< SQLite: how long one relay's lease lasts without renewal [30000]. */
  int64_t poll_ms; /**< uow_relay_run(): longest wait when nothing is pending [200]; on PostgreSQL a
                      commit with events wakes it at once. */
} uow_relay_options;
/** Current version of uow_relay_options. */
#define UOW_RELAY_OPTIONS_VERSION 1
/** Defaults for uow_relay_options. */
#define UOW_RELAY_OPTIONS_INIT                                                                     \
  { UOW_RELAY_OPTIONS_VERSION, NULL, 0, 0, 0, 0, 0, 0, 0 }

/** What a relay did; counts add up over the calls that get the same struct. */
typedef struct uow_relay_stats {
  uint64_t delivered; /**< Events the sink took. */
  uint64_t retried;   /**< Failed deliveries scheduled for a retry. */
  uint64_t dead;      /**< Events set aside after max_attempts failures. */
  uint64_t purged;    /**< Delivered events deleted after the retention period. */
  int64_t backlog; /**< Events pending (not delivered, not dead) after the last pass; -1 unknown. */
  uint64_t passes; /**< Passes made. */
} uow_relay_stats;

/**
 * One pass of the relay: in each store (or `opts->store`), claim up to
 * `batch` pending events that are due, hand them to the sink in commit order
 * per key, and mark them delivered, or schedule a retry with exponential
 * backoff and jitter, or set them aside as dead after `max_attempts`. Then
 * purge delivered events past the retention period (at most once a minute
 * per store in this environment: see uow_relay_options.retention_ms).
 *
 * Claiming: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so several relays
 * (threads or processes) share the work and an event is never delivered twice
 * at once; an event whose key has an earlier pending event waits for it, so
 * order per key holds across relays. On SQLite one relay at a time holds a
 * lease (table uow_relay_lease); others find nothing to do until it expires.
 * There is no position cursor: an event whose unit commits late is delivered
 * in a later pass, never skipped. The events of one key that are due go in
 * one pass, in order, as far as the batch has room; a relay claims them only
 * with the first of the key, and none goes while an earlier one of its key
 * waits (for a retry, say) or is held by another relay.
 *
 * @param env    the environment (uow_env_create_schema must have run).
 * @param sink   where events go; used by this relay only.
 * @param opts   options, or NULL for the defaults.
 * @param stats  counts are added to it; may be NULL.
 * @return 0 (also when the sink failed: those events are retried later and
 *         counted); UOW_EINVAL (bad arguments or options); UOW_EIO (a store
 *         failed; the message says which); UOW_ENOMEM.
 * Threads: any; each relay needs its own sink.
 */
UOW_API int uow_relay_once(uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                           uow_relay_stats *stats);

/** Called by uow_relay_run() after each pass; return non-zero to stop. */
typedef int (*uow_relay_progress_fn)(void *arg, const uow_relay_stats *stats);

/**
 * Run uow_relay_once() in a loop until `*stop` becomes non-zero or `progress`
 * asks to stop, waiting up to `poll_ms` when a pass found nothing to deliver:
 * on PostgreSQL it listens (LISTEN uow_outbox on a connection of its own), and
 * every commit that writes outbox rows wakes it at once; elsewhere it polls. A
 * store that fails is retried on the next pass (the failure is in
 * uow_env_errmsg()).
 * @param stop      checked before each pass; may be NULL (then only progress stops it).
 *                  It is read with an atomic load: another thread sets it with
 *                  an atomic store, e.g. `__atomic_store_n(&flag, 1, __ATOMIC_RELEASE)`
 *                  (a plain `flag = 1` from another thread is a data race); a
 *                  signal handler on the relay's thread may set it plainly.
 * @param progress  called after each pass with the running totals; may be NULL.
 * @return 0 when stopped; UOW_EINVAL (bad arguments; NULL stop and NULL progress).
 * Threads: any; see uow_relay_once().
 */
UOW_API int uow_relay_run(uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                          const volatile int *stop, uow_relay_progress_fn progress, void *arg);

/**
 * Make dead events pending again (attempts reset), in `store` or, when NULL,
 * in every SQL store.
 * @param count  receives the number of events revived; may be NULL.
 * @return 0; UOW_EINVAL (unknown store); UOW_EIO; UOW_ENOMEM.
 * Threads: any.
 */
UOW_API int uow_outbox_requeue(uow_env *env, const char *store, uint64_t *count);

/** @} */

/** @defgroup misc Errors and memory
 * @{ */

/** A static description of an error code ("conflict", ...). Never NULL. */
UOW_API const char *uow_strerror(int code);

/**
 * Replace the allocator used by the library (it calls nothing else). Call
 * before any other function; NULL for all three restores the C library's.
 * With the C library's allocator, a unit's big memory blocks and hash
 * tables (64 KiB and more) come from mmap with their pages in place, which
 * spares a page fault per page; with an allocator set here, every byte comes
 * from it.
 * `realloc_fn` follows realloc() semantics.
 * @return 0; UOW_EINVAL (some but not all are NULL).
 * Threads: call once, before other threads use the library.
 */
UOW_API int uow_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                              void (*free_fn)(void *));

/** @} */

#ifdef __cplusplus
}
#endif
#endif /* UOW_H */
