/*
 * uow/store.h - the store interface, for people who write a store.
 *
 * A store is a table of functions (uow_store_ops) registered under a URL
 * scheme. The core (src/core) talks to databases only through it: it opens
 * connections, begins and ends transactions, reads rows into uow_value arrays
 * and hands batches of writes to execute. A store never decides when to
 * commit: it executes what the core asks, and reports failures with a code
 * and its own detail (SQLSTATE, extended code, server text) in a uow_status.
 *
 * Threads: the core calls a connection from one thread at a time; `open`,
 * `close`, `connect` and `disconnect` may be called from any thread, so the
 * driver object must be safe to share for those.
 */
#ifndef UOW_STORE_H
#define UOW_STORE_H

#include "../uow.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where a store reports a failure: a UOW_E* code and a message. */
typedef struct uow_status {
  int code;          /**< 0 or a UOW_E* code. */
  char message[768]; /**< The store's detail, NUL-terminated. */
} uow_status;

/**
 * Set `st` to `code` with a printf-style message; returns `code` so that a
 * driver can `return uow_status_set(st, UOW_EIO, "...")`.
 */
UOW_API int uow_status_set(uow_status *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** Store capabilities (uow_store_ops.caps). */
#define UOW_STORE_TRANSACTIONAL 0x01u /**< begin/commit/rollback/savepoints are real. */
#define UOW_STORE_PREPARE 0x02u       /**< Two-phase commit: prepare/commit_prepared/... */
#define UOW_STORE_SQL 0x04u           /**< Queries with where clauses and exec. */
/** The store cannot join a transaction: a unit's writes to it become intents,
 * committed in the outbox with the unit and applied afterwards with `apply`. */
#define UOW_STORE_INTENTS 0x08u
/** An INSERT may come as the object itself (uow_write.object, `values`
 * NULL): the store reads each column with uow_column_value() as it binds it,
 * and no value is copied first. The core looks at this bit only when `abi` is
 * 5 or more. */
#define UOW_STORE_OBJECTS 0x10u

/** A driver's store object (one per uow_env_add_store). */
typedef struct uow_store_driver uow_store_driver;
/** A driver's connection. */
typedef struct uow_store_conn uow_store_conn;

/** Called once per row read; `row` has one value per entity column, in order.
 * Text and blob bytes are valid only during the call. Return 0 to go on, or a
 * UOW_E* code to stop (the store returns it). */
typedef int (*uow_row_fn)(void *ctx, const uow_value *row);

/** One read of `read_many`: the arguments of `read`, and where its rows go. */
typedef struct uow_read {
  const uow_entity *entity; /**< Which table. */
  const char *where;        /**< As for `read`: NULL with one parameter reads by key. */
  const uow_value *params;  /**< `nparams` values. */
  size_t nparams;           /**< Their count. */
  unsigned flags;           /**< UOW_FOR_UPDATE. */
  uow_row_fn fn;            /**< Called once per row of this read. */
  void *ctx;                /**< Passed to `fn`. */
} uow_read;

/** Kinds of write. */
typedef enum uow_write_kind {
  UOW_WRITE_INSERT = 1, /**< INSERT one row. */
  UOW_WRITE_UPDATE,     /**< UPDATE changed columns WHERE key (AND version). */
  UOW_WRITE_DELETE      /**< DELETE WHERE key (AND version). */
} uow_write_kind;

/** One row to write; the core fills the inputs and reads the outputs. */
typedef struct uow_write {
  uow_write_kind kind;      /**< What to do. */
  const uow_entity *entity; /**< Which table. */
  /** INSERT and UPDATE: one value per column (only those in `columns` are
   * used). NULL for an INSERT that comes as `object` (UOW_STORE_OBJECTS). */
  const uow_value *values;
  /** Bit i set: column i is sent (INSERT: every column but a generated key the
   * store must assign; UPDATE: the changed columns). Writes with equal (kind,
   * entity, columns) have the same statement, so stores cache by it. */
  uint64_t columns;
  union {
    uow_value key; /**< UPDATE and DELETE: the primary key. */
    /** INSERT with `values` NULL, to a store with UOW_STORE_OBJECTS: the
     * struct `entity` describes; column i is uow_column_value(&entity->columns[i],
     * object). It lasts as `values` would. */
    const void *object;
  };
  bool check_version; /**< UPDATE and DELETE: add "AND version = expected". */
  int64_t expected;   /**< The version the row must have. */
  int64_t generated;  /**< Output, INSERT of a generated key: the key assigned. */
  int64_t affected;   /**< Output: rows matched. */
} uow_write;

/** Per-store settings the core passes at open. */
typedef struct uow_store_config {
  int version;      /**< 1 */
  const char *name; /**< The store's name, for messages. */
} uow_store_config;

/** One field of an intent: a column's name and its value as text (integers in
 * decimal, doubles with 17 significant digits, booleans 0/1, text and blobs as
 * their bytes). A NULL value leaves the field out. */
typedef struct uow_intent_field {
  const char *name;  /**< The column's name. */
  const void *value; /**< Its bytes, or NULL for SQL NULL. */
  size_t len;        /**< Their count. */
} uow_intent_field;

/**
 * What a committed unit wants a store that cannot join a transaction to hold
 * for one object: every field (put) or nothing (delete), at `version`. A store
 * applies it only if it holds an older version (or none) of the object, so
 * intents can be applied again and out of order without moving backwards; a
 * delete leaves a tombstone with its version for that reason.
 */
typedef struct uow_intent {
  const char *table;              /**< The entity's table. */
  const char *key;                /**< The primary key as text. */
  int64_t version;                /**< The object's version after the unit (1 for a new one). */
  bool del;                       /**< true: delete; false: put every field. */
  const uow_intent_field *fields; /**< put: one per column, the key's column included. */
  size_t nfields;                 /**< Their count. */
} uow_intent;

/** A prepared transaction listed by `list_prepared`. */
typedef void (*uow_gid_fn)(void *ctx, const char *gid);

/**
 * The functions of a store. Functions a store lacks are NULL (and its caps say
 * so). Every function that can fail returns 0 or a UOW_E* code, with detail in
 * `st`.
 */
typedef struct uow_store_ops {
  int abi;            /**< UOW_STORE_ABI */
  const char *scheme; /**< URL scheme, e.g. "sqlite" (matched before the first ':'). */
  const char *alias;  /**< A second scheme, e.g. "postgres"; may be NULL. */
  unsigned caps;      /**< UOW_STORE_* capabilities. */

  /** Parse the URL, check it (connect once) and create the driver object. */
  int (*open)(const char *url, const uow_store_config *cfg, uow_store_driver **out, uow_status *st);
  /** Free the driver object (every connection is already closed). */
  void (*close)(uow_store_driver *drv);
  /** Maximum connections this store can pool usefully (0: no limit of its own). */
  unsigned (*max_connections)(uow_store_driver *drv);
  /** Open a connection. */
  int (*connect)(uow_store_driver *drv, uow_store_conn **out, uow_status *st);
  /** Close a connection (any transaction is rolled back). Accepts NULL. */
  void (*disconnect)(uow_store_conn *conn);
  /** True if the connection still looks usable before reuse from the pool. */
  bool (*healthy)(uow_store_conn *conn);

  /** Begin a transaction. `flags`: UOW_FOR_UPDATE asks for a write lock up front.
   * A store may defer sending it until the first statement (one round trip less). */
  int (*begin)(uow_store_conn *conn, uow_isolation isolation, unsigned flags, uow_status *st);
  /** Commit. A failure where the outcome is unknown must return UOW_EINDOUBT. */
  int (*commit)(uow_store_conn *conn, uow_status *st);
  /** Roll back (must work after any failure). */
  int (*rollback)(uow_store_conn *conn, uow_status *st);
  /** Savepoint number `level` (1 is the outermost). */
  int (*savepoint)(uow_store_conn *conn, unsigned level, uow_status *st);
  /** Release savepoint `level`. */
  int (*release)(uow_store_conn *conn, unsigned level, uow_status *st);
  /** Roll back to savepoint `level` and release it. */
  int (*rollback_to)(uow_store_conn *conn, unsigned level, uow_status *st);

  /** Two-phase commit: prepare the open transaction under `gid`. */
  int (*prepare)(uow_store_conn *conn, const char *gid, uow_status *st);
  /** Commit a prepared transaction (outside any transaction). */
  int (*commit_prepared)(uow_store_conn *conn, const char *gid, uow_status *st);
  /** Roll back a prepared transaction (outside any transaction). */
  int (*rollback_prepared)(uow_store_conn *conn, const char *gid, uow_status *st);
  /** List prepared transactions whose gid starts with `prefix`. */
  int (*list_prepared)(uow_store_conn *conn, const char *prefix, uow_gid_fn fn, void *ctx,
                       uow_status *st);

  /** Create the entity's table if it does not exist. */
  int (*create_table)(uow_store_conn *conn, const uow_entity *entity, uow_status *st);
  /**
   * Read rows of `entity`. `where` NULL with one parameter: by primary key.
   * `where` NULL with no parameters: every row. Otherwise a condition with `?`.
   * `flags`: UOW_FOR_UPDATE.
   */
  int (*read)(uow_store_conn *conn, const uow_entity *entity, const char *where,
              const uow_value *params, size_t nparams, unsigned flags, uow_row_fn fn, void *ctx,
              uow_status *st);
  /**
   * Execute `n` writes in order, as one batch where the store can (PostgreSQL:
   * one pipeline, one round trip). Stops at the first failure. Fills
   * `generated` and `affected`. An UPDATE or DELETE that matches no row is a
   * failure: UOW_ECONFLICT, with a message naming the table and the key.
   * `commit` true: when every write succeeded, commit the transaction too, in
   * the same round trip where the SQL allows it (a commit whose outcome is
   * unknown returns UOW_EINDOUBT). On failure nothing is committed.
   */
  int (*write)(uow_store_conn *conn, uow_write *writes, size_t n, bool commit, uow_status *st);
  /** Execute a statement with `?` parameters; `affected` may be NULL. */
  int (*exec)(uow_store_conn *conn, const char *sql, const uow_value *params, size_t nparams,
              int64_t *affected, uow_status *st);
  /** Count of round trips to the server on this connection: the times it
   * waited for replies with nothing more sent behind them (0 if not meaningful). */
  uint64_t (*round_trips)(uow_store_conn *conn);

  /* ---- ABI 2 ---- */

  /**
   * Can this store take part in a multi-store unit as a prepared participant
   * right now? UOW_OK if so; otherwise a code with a message saying why and
   * what to change (PostgreSQL: max_prepared_transactions is 0). NULL: yes
   * whenever the caps include UOW_STORE_PREPARE.
   */
  int (*prepare_ready)(uow_store_driver *drv, uow_status *st);
  /**
   * Run a query with `?` parameters that returns one row with one integer
   * column (e.g. SELECT count(*) ...) and store it in `*out`. Used by the
   * core's status, recovery and relay, outside or inside a transaction.
   * Required of a store with UOW_STORE_TRANSACTIONAL and UOW_STORE_SQL
   * (uow_register_store refuses one without it).
   */
  int (*query_int64)(uow_store_conn *conn, const char *sql, const uow_value *params, size_t nparams,
                     int64_t *out, uow_status *st);
  /**
   * UOW_STORE_INTENTS: apply `n` intents in order, each version-guarded (see
   * uow_intent), in as few round trips as the store allows. `*applied` gets
   * how many of the first ones are done (skipped as older counts as done).
   * Fails with UOW_EIO when the store is unreachable.
   */
  int (*apply)(uow_store_conn *conn, const uow_intent *intents, size_t n, size_t *applied,
               uow_status *st);
  /**
   * Wait up to `timeout_ms` for a sign that outbox rows were committed, so an
   * idle relay wakes at once instead of at its next poll; `*signalled` says
   * whether one came. Called on a connection of its own, outside any
   * transaction. A store that has it signals, from `write` with `commit`, when
   * the batch inserted into uow_outbox (PostgreSQL: LISTEN/NOTIFY on channel
   * uow_outbox, the NOTIFY in the commit's own pipeline). NULL: relays poll.
   */
  int (*wait_outbox)(uow_store_conn *conn, int timeout_ms, bool *signalled, uow_status *st);

  /* ---- ABI 3 ---- */

  /**
   * Run `n` reads in order, as one batch where the store can (PostgreSQL: one
   * pipeline, one round trip), each read as `read` would run it: a read runs
   * after the ones before it, so it sees their locks (a FOR UPDATE of read 0
   * holds before read 1 runs). Rows go to each read's own `fn`, read by read.
   * Check every read the store can check without running it (its statement,
   * its parameter count) before running any, so that a bad one fails the call
   * with nothing read. Stops at the first failure; `*failed` gets the index of
   * the read it concerns, or `n` on success and for a failure of none of them
   * (a connection lost). NULL: the core calls `read` once per read (uow_fetch).
   * The core looks at this field only when `abi` is 3 or more.
   */
  int (*read_many)(uow_store_conn *conn, const uow_read *reads, size_t n, size_t *failed,
                   uow_status *st);

  /* ---- ABI 4 ---- */

  /**
   * One slice of a big flush (the core sends a flush of more than 1,000
   * writes in slices): run `n` writes as `write` without `commit` would,
   * but return before their outcome is known where the store can, so that
   * the server works through them while the core makes the next slice.
   *
   * The call sends its own writes first, then completes the slice an earlier
   * `write_ahead` left in flight: that slice's outputs (`generated`,
   * `affected`) are filled, and its failure is this call's failure. This
   * call's writes stay in flight until the next `write` or `write_ahead` on
   * the connection completes them (`write` with `n` 0 only completes), so
   * the `writes` array must stay valid until that call returns; the values
   * it points to (`values`, and the bytes of text and blob values) need only
   * last through this call, except `key`, which must last as long as the
   * array. A store may complete a slice at once (PostgreSQL does when it
   * holds an UPDATE or DELETE, whose row counts are checked on the client).
   * A failure leaves nothing in flight. Any other function called with a
   * slice in flight first completes it and fails with its failure.
   * NULL: the core calls `write`. The core looks at this field only when
   * `abi` is 4 or more.
   */
  int (*write_ahead)(uow_store_conn *conn, uow_write *writes, size_t n, uow_status *st);
} uow_store_ops;

/** The version of uow_store_ops this header describes (2: prepare_ready,
 * query_int64, apply, wait_outbox; 3: read_many; 4: write_ahead; 5:
 * UOW_STORE_OBJECTS). uow_register_store() takes 2 to 5; a store of an older
 * ABI has a table that ends before the functions added since, which the core
 * never reads, and gets every INSERT with its `values`. */
#define UOW_STORE_ABI 5

/**
 * Make a store available to every environment opened afterwards. The built-in
 * stores are registered already. `ops` must stay valid for the life of the
 * process.
 * @return 0; UOW_EINVAL (abi other than 2 to 5, scheme taken); UOW_ENOMEM.
 * Threads: call before opening environments.
 */
UOW_API int uow_register_store(const uow_store_ops *ops);

/**
 * Column `col` of `object`, a struct its entity describes, as the core reads
 * it into uow_write.values: a 0 in a UOW_NULLABLE integer, double or bool
 * member is SQL NULL, as is a NULL text or blob pointer; a text's size is its
 * strlen(). The bytes of text and blobs stay the object's, not copied.
 * @return the value; SQL NULL when `col` or `object` is NULL.
 * Threads: any; it only reads `object`.
 */
UOW_API uow_value uow_column_value(const uow_column *col, const void *object);

#ifdef __cplusplus
}
#endif
#endif /* UOW_STORE_H */
