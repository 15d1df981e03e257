/*
 * sqlite.c - the SQLite store: uow/store.h implemented over libsqlite3.
 *
 * The core opens it from `sqlite:PATH` or `sqlite::memory:`, pools its
 * connections and drives transactions and batches of writes through the ops
 * table at the end of this file. The SQL text comes from sql.c (the dialect
 * below says how SQLite spells types); what is SQLite's own lives here: the
 * URL options, the pragmas every connection gets, a per-connection statement
 * cache, and the mapping of result codes to UOW_E* codes with the extended
 * code named in every message.
 *
 * Choices worth knowing:
 *  - SQLite cannot prepare a transaction (no two-phase commit), so it can only
 *    be the decider of a multi-store unit: prepare and its kin are NULL.
 *  - SQLite transactions are serializable, so isolation levels are ignored.
 *    A unit that will write asks for UOW_FOR_UPDATE and gets BEGIN IMMEDIATE:
 *    it takes the write lock up front instead of failing later with
 *    SQLITE_BUSY_SNAPSHOT. Busy and locked are conflicts (retryable).
 *  - SQLite's COMMIT is atomic: when it fails nothing was committed, with
 *    one exception in WAL mode: a COMMIT whose log sync fails may be kept
 *    by WAL recovery if the process dies, so that one is UOW_EINDOUBT.
 *  - After some failures (SQLITE_FULL, I/O errors, ...) SQLite rolls the
 *    transaction back by itself. Statements sent after that would run in
 *    autocommit mode, each committed at once; the connection notices and
 *    refuses them until the core rolls back.
 *  - `:memory:`: every connection to ":memory:" is a separate, empty database.
 *    So the driver owns exactly one connection, the resident one: `open`
 *    makes it, `close` closes it, max_connections says 1, `connect` lends it
 *    and `disconnect` takes it back (rolling back whatever is open) without
 *    closing it. The pool's limit means nobody asks for a second one; if
 *    someone does, an atomic flag answers UOW_EMISUSE instead of sharing it.
 *  - Files the library creates are mode 0600; SQLite gives the -wal and -shm
 *    files the mode of the database file.
 *  - Memory: the library's own allocations go through uow__malloc & co.;
 *    SQLite keeps its own allocator (configuring it is process-wide and would
 *    reach the application's own use of SQLite).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stores/sql.h"
#include "util/util.h"

/* Entities have at most 64 columns (a uint64_t says which are written). */
#define MAX_COLUMNS 64
/* Statements kept per connection. Ad hoc text can grow without bound; this keeps it bounded. */
#define CACHE_MAX 512
/* Rows per multi-row INSERT (fewer when SQLite's parameter limit says so). */
#define INSERT_ROWS_MAX 100

static const uow_sql_dialect sqlite_dialect = {
    .dollar_params = false,
    .int_type = "INTEGER",
    .double_type = "REAL",
    .blob_type = "BLOB",
    .bool_type = "INTEGER",
    .generated_key = "INTEGER PRIMARY KEY",
    .returning_generated = false,
};

/* ---- types ---- */

struct uow_store_driver {
  char *path;               /* file name, or ":memory:" */
  bool memory;              /* path is ":memory:" */
  int busy_timeout_ms;      /* how long a connection waits for a lock */
  const char *journal_mode; /* static: "wal", "delete", "truncate", "memory" */
  const char *synchronous;  /* static: "off", "normal", "full", "extra" */
  uow_store_conn *resident; /* :memory: only: the connection that holds the database */
  atomic_bool resident_lent;
};

/* Statements every connection prepares once at connect, so that ending a
 * transaction never depends on preparing (allocating) anything. */
enum { FIXED_BEGIN, FIXED_BEGIN_IMMEDIATE, FIXED_COMMIT, FIXED_ROLLBACK, FIXED_COUNT };
static const char *const fixed_sql[FIXED_COUNT] = {"BEGIN", "BEGIN IMMEDIATE", "COMMIT",
                                                   "ROLLBACK"};

typedef enum stmt_kind {
  STMT_INSERT = UOW_WRITE_INSERT,
  STMT_UPDATE = UOW_WRITE_UPDATE,
  STMT_DELETE = UOW_WRITE_DELETE,
  STMT_SELECT_KEY,   /* SELECT ... WHERE key = ? */
  STMT_SELECT_ALL,   /* SELECT ... (every row) */
  STMT_SELECT_WHERE, /* keyed by text: the caller's where clause */
  STMT_EXEC          /* keyed by text: the statement itself */
} stmt_kind;

/* What identifies a cached statement: its shape, or its text. */
typedef struct stmt_key {
  stmt_kind kind;
  const uow_entity *entity; /* NULL for STMT_EXEC */
  uint64_t columns;         /* INSERT, UPDATE: the columns written */
  bool check_version;       /* UPDATE, DELETE */
  const char *text;         /* STMT_SELECT_WHERE, STMT_EXEC */
  size_t rows;              /* INSERT: rows in its VALUES list (0 means 1) */
} stmt_key;

typedef struct cached_stmt {
  struct cached_stmt *next; /* in the connection's list of shaped or of text statements */
  sqlite3_stmt *stmt;
  uint64_t hash;
  stmt_key key; /* key.text points to owned_text */
  char *owned_text;
} cached_stmt;

struct uow_store_conn {
  uow_store_driver *drv;
  sqlite3 *db;
  sqlite3_stmt *fixed[FIXED_COUNT];
  uow_map cache;       /* stmt_key -> cached_stmt */
  cached_stmt *shaped; /* entries keyed by shape (writes, key and full reads) */
  cached_stmt *texts;  /* entries keyed by text (where reads, exec, savepoints) */
  uow_buf sql;         /* scratch for building a statement's text */
  bool resident;       /* the :memory: connection, owned by the driver */
  bool in_tx;          /* BEGIN succeeded and no COMMIT or ROLLBACK since */
  int lost_rc;         /* the failure after which SQLite ended the transaction itself */
  bool fatal;          /* corruption or I/O error seen: do not reuse */
};

/* ---- result codes ---- */

#define CODE(name)                                                                                 \
  { name, #name }
/* Every primary and extended result code of SQLite 3.40's sqlite3.h. */
static const struct {
  int code;
  const char *name;
} code_names[] = {
    CODE(SQLITE_OK),
    CODE(SQLITE_ERROR),
    CODE(SQLITE_INTERNAL),
    CODE(SQLITE_PERM),
    CODE(SQLITE_ABORT),
    CODE(SQLITE_BUSY),
    CODE(SQLITE_LOCKED),
    CODE(SQLITE_NOMEM),
    CODE(SQLITE_READONLY),
    CODE(SQLITE_INTERRUPT),
    CODE(SQLITE_IOERR),
    CODE(SQLITE_CORRUPT),
    CODE(SQLITE_NOTFOUND),
    CODE(SQLITE_FULL),
    CODE(SQLITE_CANTOPEN),
    CODE(SQLITE_PROTOCOL),
    CODE(SQLITE_EMPTY),
    CODE(SQLITE_SCHEMA),
    CODE(SQLITE_TOOBIG),
    CODE(SQLITE_CONSTRAINT),
    CODE(SQLITE_MISMATCH),
    CODE(SQLITE_MISUSE),
    CODE(SQLITE_NOLFS),
    CODE(SQLITE_AUTH),
    CODE(SQLITE_FORMAT),
    CODE(SQLITE_RANGE),
    CODE(SQLITE_NOTADB),
    CODE(SQLITE_NOTICE),
    CODE(SQLITE_WARNING),
    CODE(SQLITE_ROW),
    CODE(SQLITE_DONE),
    CODE(SQLITE_ERROR_MISSING_COLLSEQ),
    CODE(SQLITE_ERROR_RETRY),
    CODE(SQLITE_ERROR_SNAPSHOT),
    CODE(SQLITE_IOERR_READ),
    CODE(SQLITE_IOERR_SHORT_READ),
    CODE(SQLITE_IOERR_WRITE),
    CODE(SQLITE_IOERR_FSYNC),
    CODE(SQLITE_IOERR_DIR_FSYNC),
    CODE(SQLITE_IOERR_TRUNCATE),
    CODE(SQLITE_IOERR_FSTAT),
    CODE(SQLITE_IOERR_UNLOCK),
    CODE(SQLITE_IOERR_RDLOCK),
    CODE(SQLITE_IOERR_DELETE),
    CODE(SQLITE_IOERR_BLOCKED),
    CODE(SQLITE_IOERR_NOMEM),
    CODE(SQLITE_IOERR_ACCESS),
    CODE(SQLITE_IOERR_CHECKRESERVEDLOCK),
    CODE(SQLITE_IOERR_LOCK),
    CODE(SQLITE_IOERR_CLOSE),
    CODE(SQLITE_IOERR_DIR_CLOSE),
    CODE(SQLITE_IOERR_SHMOPEN),
    CODE(SQLITE_IOERR_SHMSIZE),
    CODE(SQLITE_IOERR_SHMLOCK),
    CODE(SQLITE_IOERR_SHMMAP),
    CODE(SQLITE_IOERR_SEEK),
    CODE(SQLITE_IOERR_DELETE_NOENT),
    CODE(SQLITE_IOERR_MMAP),
    CODE(SQLITE_IOERR_GETTEMPPATH),
    CODE(SQLITE_IOERR_CONVPATH),
    CODE(SQLITE_IOERR_VNODE),
    CODE(SQLITE_IOERR_AUTH),
    CODE(SQLITE_IOERR_BEGIN_ATOMIC),
    CODE(SQLITE_IOERR_COMMIT_ATOMIC),
    CODE(SQLITE_IOERR_ROLLBACK_ATOMIC),
    CODE(SQLITE_IOERR_DATA),
    CODE(SQLITE_IOERR_CORRUPTFS),
    CODE(SQLITE_LOCKED_SHAREDCACHE),
    CODE(SQLITE_LOCKED_VTAB),
    CODE(SQLITE_BUSY_RECOVERY),
    CODE(SQLITE_BUSY_SNAPSHOT),
    CODE(SQLITE_BUSY_TIMEOUT),
    CODE(SQLITE_CANTOPEN_NOTEMPDIR),
    CODE(SQLITE_CANTOPEN_ISDIR),
    CODE(SQLITE_CANTOPEN_FULLPATH),
    CODE(SQLITE_CANTOPEN_CONVPATH),
    CODE(SQLITE_CANTOPEN_DIRTYWAL),
    CODE(SQLITE_CANTOPEN_SYMLINK),
    CODE(SQLITE_CORRUPT_VTAB),
    CODE(SQLITE_CORRUPT_SEQUENCE),
    CODE(SQLITE_CORRUPT_INDEX),
    CODE(SQLITE_READONLY_RECOVERY),
    CODE(SQLITE_READONLY_CANTLOCK),
    CODE(SQLITE_READONLY_ROLLBACK),
    CODE(SQLITE_READONLY_DBMOVED),
    CODE(SQLITE_READONLY_CANTINIT),
    CODE(SQLITE_READONLY_DIRECTORY),
    CODE(SQLITE_ABORT_ROLLBACK),
    CODE(SQLITE_CONSTRAINT_CHECK),
    CODE(SQLITE_CONSTRAINT_COMMITHOOK),
    CODE(SQLITE_CONSTRAINT_FOREIGNKEY),
    CODE(SQLITE_CONSTRAINT_FUNCTION),
    CODE(SQLITE_CONSTRAINT_NOTNULL),
    CODE(SQLITE_CONSTRAINT_PRIMARYKEY),
    CODE(SQLITE_CONSTRAINT_TRIGGER),
    CODE(SQLITE_CONSTRAINT_UNIQUE),
    CODE(SQLITE_CONSTRAINT_VTAB),
    CODE(SQLITE_CONSTRAINT_ROWID),
    CODE(SQLITE_CONSTRAINT_PINNED),
    CODE(SQLITE_CONSTRAINT_DATATYPE),
    CODE(SQLITE_NOTICE_RECOVER_WAL),
    CODE(SQLITE_NOTICE_RECOVER_ROLLBACK),
    CODE(SQLITE_WARNING_AUTOINDEX),
    CODE(SQLITE_AUTH_USER),
    CODE(SQLITE_OK_LOAD_PERMANENTLY),
    CODE(SQLITE_OK_SYMLINK),
};
#undef CODE

/* The code's name, e.g. "SQLITE_CONSTRAINT_UNIQUE". A code newer than the
 * table is named by its primary code and number; `buf` holds that text. */
static const char *code_name(int rc, char *buf, size_t cap) {
  size_t n = sizeof(code_names) / sizeof(code_names[0]);
  for (size_t i = 0; i < n; i++)
    if (code_names[i].code == rc)
      return code_names[i].name;
  for (size_t i = 0; i < n; i++)
    if (code_names[i].code == (rc & 0xff)) {
      snprintf(buf, cap, "%s, extended code %d", code_names[i].name, rc);
      return buf;
    }
  snprintf(buf, cap, "SQLite result code %d", rc);
  return buf;
}

static int uow_code(int rc) {
  switch (rc & 0xff) {
  case SQLITE_BUSY:   /* a busy writer, or a WAL snapshot gone stale (SQLITE_BUSY_SNAPSHOT) */
  case SQLITE_LOCKED: /* a table locked by another statement or shared-cache connection */
    return UOW_ECONFLICT;
  case SQLITE_CONSTRAINT:
    return UOW_ECONSTRAINT;
  case SQLITE_NOMEM:
    return UOW_ENOMEM;
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN:
  case SQLITE_FULL:
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_READONLY:
  case SQLITE_PROTOCOL:
  case SQLITE_PERM:  /* the file system refused the access mode */
  case SQLITE_NOLFS: /* the file system cannot hold a file this large */
    return UOW_EIO;
  default: /* SQLITE_ERROR (bad SQL), SQLITE_RANGE, SQLITE_MISMATCH, ... */
    return UOW_EINVAL;
  }
}

/* Failures after which the connection is not worth reusing: a new one re-reads the file. */
static bool is_fatal(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_IOERR;
}

/* Report failure `rc` of the last call on the connection; `sql` (may be NULL)
 * is quoted when the statement itself is what failed to compile. */
static int sqlite_failure(uow_store_conn *conn, int rc, const char *sql, uow_status *st) {
  char name[96];
  const char *ended = "";
  if (is_fatal(rc))
    conn->fatal = true;
  if (conn->in_tx && !conn->lost_rc && sqlite3_get_autocommit(conn->db)) {
    conn->lost_rc = rc;
    ended = "; SQLite rolled the transaction back";
  }
  if (sql)
    return uow_status_set(st, uow_code(rc), "%s (%s) in \"%s\"%s", sqlite3_errmsg(conn->db),
                          code_name(rc, name, sizeof(name)), sql, ended);
  return uow_status_set(st, uow_code(rc), "%s (%s)%s", sqlite3_errmsg(conn->db),
                        code_name(rc, name, sizeof(name)), ended);
}

/* Refuse statements once the unit's transaction is gone without the core
 * ending it: they would run in autocommit mode, each committed at once. */
static int check_transaction(uow_store_conn *conn, uow_status *st) {
  char name[96];
  if (!conn->in_tx || !sqlite3_get_autocommit(conn->db))
    return UOW_OK;
  if (conn->lost_rc)
    return uow_status_set(st, uow_code(conn->lost_rc),
                          "SQLite rolled the transaction back after an earlier failure (%s); "
                          "roll the unit back",
                          code_name(conn->lost_rc, name, sizeof(name)));
  return uow_status_set(st, UOW_EMISUSE,
                        "the transaction was ended by a statement (COMMIT or ROLLBACK through "
                        "exec?); roll the unit back");
}

/* ---- URL ---- */

static const char *const journal_modes[] = {"wal", "delete", "truncate", "memory", NULL};
static const char *const sync_levels[] = {"off", "normal", "full", "extra", NULL};

static bool span_is(const char *s, size_t n, const char *word) {
  return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* The static string among `choices` equal to s[0..n), or NULL. */
static const char *pick(const char *const *choices, const char *s, size_t n) {
  for (size_t i = 0; choices[i]; i++)
    if (span_is(s, n, choices[i]))
      return choices[i];
  return NULL;
}

/* Milliseconds: digits only, at most nine of them so that the value fits an int. */
static bool parse_ms(const char *s, size_t n, int *out) {
  int ms = 0;
  if (n == 0 || n > 9)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    ms = ms * 10 + (s[i] - '0');
  }
  *out = ms;
  return true;
}

/* One `key=value` of the query string, `len` bytes at `opt`. */
static int parse_option(uow_store_driver *drv, const char *opt, size_t len, uow_status *st) {
  const char *eq = memchr(opt, '=', len);
  if (!eq)
    return uow_status_set(st, UOW_EINVAL, "sqlite URL option '%.*s' needs a value", (int)len, opt);
  size_t klen = (size_t)(eq - opt);
  const char *value = eq + 1;
  int vlen = (int)(len - klen - 1);
  if (span_is(opt, klen, "busy_timeout")) {
    if (!parse_ms(value, (size_t)vlen, &drv->busy_timeout_ms))
      return uow_status_set(st, UOW_EINVAL,
                            "sqlite URL option busy_timeout: bad value '%.*s' (milliseconds, "
                            "0 to 999999999)",
                            vlen, value);
  } else if (span_is(opt, klen, "journal_mode")) {
    drv->journal_mode = pick(journal_modes, value, (size_t)vlen);
    if (!drv->journal_mode)
      return uow_status_set(st, UOW_EINVAL,
                            "sqlite URL option journal_mode: bad value '%.*s' (wal, delete, "
                            "truncate or memory)",
                            vlen, value);
  } else if (span_is(opt, klen, "synchronous")) {
    drv->synchronous = pick(sync_levels, value, (size_t)vlen);
    if (!drv->synchronous)
      return uow_status_set(st, UOW_EINVAL,
                            "sqlite URL option synchronous: bad value '%.*s' (off, normal, full "
                            "or extra)",
                            vlen, value);
  } else {
    return uow_status_set(st, UOW_EINVAL,
                          "unknown sqlite URL option '%.*s' (known: busy_timeout, journal_mode, "
                          "synchronous)",
                          (int)klen, opt);
  }
  return UOW_OK;
}

/* `sqlite:PATH[?options]` into the driver's settings. */
static int parse_url(uow_store_driver *drv, const char *url, uow_status *st) {
  static const char scheme[] = "sqlite:";
  if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
    return uow_status_set(st, UOW_EINVAL, "not a sqlite URL: '%s'", url);
  const char *path = url + sizeof(scheme) - 1;
  const char *query = strchr(path, '?');
  size_t path_len = query ? (size_t)(query - path) : strlen(path);
  if (path_len == 0)
    return uow_status_set(st, UOW_EINVAL,
                          "sqlite URL '%s' has no path (sqlite:PATH or sqlite::memory:)", url);
  drv->path = uow__strndup(path, path_len);
  if (!drv->path)
    return uow_status_set(st, UOW_ENOMEM, "out of memory parsing a sqlite URL");
  drv->memory = strcmp(drv->path, ":memory:") == 0;
  drv->busy_timeout_ms = 5000;
  drv->synchronous = "full";
  for (const char *opt = query ? query + 1 : NULL; opt && *opt;) {
    const char *end = strchr(opt, '&');
    size_t len = end ? (size_t)(end - opt) : strlen(opt);
    if (len) { /* tolerate "&&" and a trailing '&' */
      int rc = parse_option(drv, opt, len, st);
      if (rc)
        return rc;
    }
    opt = end ? end + 1 : NULL;
  }
  if (!drv->journal_mode) /* an in-memory database has no file to keep a WAL in */
    drv->journal_mode = drv->memory ? "memory" : "wal";
  return UOW_OK;
}

/* ---- connections ---- */

/* Create the database file 0600 when it does not exist: SQLite would create it
 * with the umask's mode, and its -wal and -shm files copy the file's mode. */
static int create_file(const char *path, uow_status *st) {
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    close(fd);
    return UOW_OK;
  }
  if (errno == EEXIST)
    return UOW_OK;
  return uow_status_set(st, UOW_EIO, "cannot create the file: %s", strerror(errno));
}

/* Run `sql` once, outside the statement cache, ignoring any rows. */
static int run_once(uow_store_conn *conn, const char *sql, uow_status *st) {
  sqlite3_stmt *stmt = NULL;
  int rc = UOW_OK;
  int src = sqlite3_prepare_v2(conn->db, sql, -1, &stmt, NULL);
  if (src == SQLITE_OK && stmt)
    while ((src = sqlite3_step(stmt)) == SQLITE_ROW)
      ;
  if (src != SQLITE_OK && src != SQLITE_DONE)
    rc = sqlite_failure(conn, src, sql, st);
  sqlite3_finalize(stmt);
  return rc;
}

/* Set the journal mode and check that it took: a file system that cannot hold a
 * WAL, or an in-memory database, silently keeps the mode it has. The mode is
 * set on every connection because only WAL persists in the file. */
static int set_journal_mode(uow_store_conn *conn, uow_status *st) {
  const char *wanted = conn->drv->journal_mode;
  char sql[64];
  sqlite3_stmt *stmt = NULL;
  int rc = UOW_OK;
  snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", wanted);
  int src = sqlite3_prepare_v2(conn->db, sql, -1, &stmt, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_step(stmt);
  if (src == SQLITE_ROW) {
    const char *got = (const char *)sqlite3_column_text(stmt, 0);
    if (!got || strcmp(got, wanted) != 0)
      rc = uow_status_set(st, UOW_EINVAL, "journal_mode=%s was refused: the database stays in '%s'",
                          wanted, got ? got : "?");
  } else {
    rc = sqlite_failure(conn, src, sql, st);
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int configure(uow_store_conn *conn, uow_status *st) {
  char sql[64];
  sqlite3_extended_result_codes(conn->db, 1);
  sqlite3_busy_timeout(conn->db, conn->drv->busy_timeout_ms);
  int rc = set_journal_mode(conn, st);
  if (rc)
    return rc;
  snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", conn->drv->synchronous);
  rc = run_once(conn, sql, st);
  if (rc)
    return rc;
  rc = run_once(conn, "PRAGMA foreign_keys=ON", st);
  if (rc)
    return rc;
  for (int i = 0; i < FIXED_COUNT; i++) {
    int src = sqlite3_prepare_v3(conn->db, fixed_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                 &conn->fixed[i], NULL);
    if (src != SQLITE_OK)
      return sqlite_failure(conn, src, fixed_sql[i], st);
  }
  return UOW_OK;
}

static void cache_clear(uow_store_conn *conn);

static void connection_free(uow_store_conn *conn) {
  if (!conn)
    return;
  cache_clear(conn);
  for (int i = 0; i < FIXED_COUNT; i++)
    sqlite3_finalize(conn->fixed[i]);
  sqlite3_close_v2(conn->db); /* rolls back an open transaction */
  uow__buf_free(&conn->sql);
  uow__free(conn);
}

static int connection_open(uow_store_driver *drv, uow_store_conn **out, uow_status *st) {
  int rc;
  *out = NULL;
  uow_store_conn *conn = uow__calloc(1, sizeof(*conn));
  if (!conn)
    return uow_status_set(st, UOW_ENOMEM, "out of memory opening a SQLite connection");
  conn->drv = drv;
  uow__buf_init(&conn->sql);
  rc = drv->memory ? UOW_OK : create_file(drv->path, st);
  if (rc)
    goto fail;
  /* NOMUTEX: the core uses a connection from one thread at a time. */
  int src = sqlite3_open_v2(drv->path, &conn->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (src != SQLITE_OK) {
    rc = conn->db ? sqlite_failure(conn, sqlite3_extended_errcode(conn->db), NULL, st)
                  : uow_status_set(st, UOW_ENOMEM, "out of memory opening a SQLite connection");
    goto fail;
  }
  rc = configure(conn, st);
  if (rc)
    goto fail;
  *out = conn;
  return UOW_OK;
fail:
  if (st && rc != UOW_ENOMEM) {
    char detail[sizeof(st->message)];
    memcpy(detail, st->message, sizeof(detail));
    uow_status_set(st, rc, "cannot open '%s': %s", drv->path, detail);
  }
  connection_free(conn);
  return rc;
}

/* ---- statement cache ---- */

static bool keyed_by_text(stmt_kind kind) { return kind == STMT_SELECT_WHERE || kind == STMT_EXEC; }

static uint64_t key_hash(const stmt_key *key) {
  if (keyed_by_text(key->kind))
    return uow__hash_bytes(key->text, strlen(key->text),
                           (uint64_t)(uintptr_t)key->entity ^ (uint64_t)key->kind);
  uint64_t shape[5] = {(uint64_t)key->kind, (uint64_t)(uintptr_t)key->entity, key->columns,
                       key->check_version, key->rows};
  return uow__hash_bytes(shape, sizeof(shape), 0);
}

static bool key_equal(const void *value, const void *wanted) {
  const stmt_key *a = &((const cached_stmt *)value)->key;
  const stmt_key *b = wanted;
  if (a->kind != b->kind || a->entity != b->entity || a->columns != b->columns ||
      a->check_version != b->check_version || a->rows != b->rows)
    return false;
  return !keyed_by_text(a->kind) || strcmp(a->text, b->text) == 0;
}

static void cached_free(cached_stmt *entry) {
  sqlite3_finalize(entry->stmt);
  uow__free(entry->owned_text);
  uow__free(entry);
}

/* Drop the idle statements of one list; a busy one (a read in progress) stays. */
static void cache_evict(uow_store_conn *conn, cached_stmt **list) {
  cached_stmt **link = list;
  while (*link) {
    cached_stmt *entry = *link;
    if (sqlite3_stmt_busy(entry->stmt)) {
      link = &entry->next;
      continue;
    }
    *link = entry->next;
    uow__map_remove(&conn->cache, entry->hash, entry);
    cached_free(entry);
  }
}

static void cache_clear(uow_store_conn *conn) {
  cached_stmt *lists[2] = {conn->shaped, conn->texts};
  for (int i = 0; i < 2; i++)
    while (lists[i]) {
      cached_stmt *next = lists[i]->next;
      cached_free(lists[i]);
      lists[i] = next;
    }
  conn->shaped = conn->texts = NULL;
  uow__map_free(&conn->cache);
}

/* Make room for one more statement. Text-keyed ones go first: a program can
 * make them without bound, while the shapes of its writes are few and hot. */
static void cache_make_room(uow_store_conn *conn) {
  if (conn->cache.len < CACHE_MAX)
    return;
  cache_evict(conn, &conn->texts);
  if (conn->cache.len >= CACHE_MAX)
    cache_evict(conn, &conn->shaped);
}

/* Only blanks, semicolons and comments from `p` to the end. */
static bool only_separators(const char *p) {
  for (;;) {
    p += strspn(p, " \t\r\n\f\v;");
    if (p[0] == '-' && p[1] == '-') {
      p = strchr(p, '\n');
      if (!p)
        return true;
    } else if (p[0] == '/' && p[1] == '*') {
      p = strstr(p + 2, "*/");
      if (!p) /* SQLite reads an unterminated comment to the end */
        return true;
      p += 2;
    } else {
      return *p == '\0';
    }
  }
}

/* Prepare exactly one statement: SQLite would silently ignore a second one (or
 * run a second one smuggled into a where clause), so a tail is refused. */
static int prepare_one(uow_store_conn *conn, const char *sql, sqlite3_stmt **out, uow_status *st) {
  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  int src = sqlite3_prepare_v3(conn->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (src != SQLITE_OK)
    return sqlite_failure(conn, src, sql, st);
  if (!stmt)
    return uow_status_set(st, UOW_EINVAL, "no SQL statement in \"%s\"", sql);
  if (tail && !only_separators(tail)) {
    sqlite3_finalize(stmt);
    return uow_status_set(st, UOW_EINVAL,
                          "one SQL statement per call; after the first comes \"%s\"", tail);
  }
  *out = stmt;
  return UOW_OK;
}

/* The SQL text of a statement not in the cache yet. */
static int statement_text(uow_store_conn *conn, const stmt_key *key, const char **out,
                          uow_status *st) {
  uow_buf *sql = &conn->sql;
  uow_write shape;
  if (key->kind == STMT_EXEC) {
    *out = key->text;
    return UOW_OK;
  }
  uow__buf_reset(sql);
  switch (key->kind) {
  case STMT_INSERT:
  case STMT_UPDATE:
  case STMT_DELETE:
    memset(&shape, 0, sizeof(shape));
    shape.kind = (uow_write_kind)key->kind;
    shape.entity = key->entity;
    shape.columns = key->columns;
    shape.check_version = key->check_version;
    uow__sql_write(sql, &sqlite_dialect, &shape, key->rows ? key->rows : 1);
    break;
  case STMT_SELECT_KEY:
  case STMT_SELECT_ALL:
  case STMT_SELECT_WHERE:
    /* FOR UPDATE is not SQLite syntax: the lock comes from BEGIN IMMEDIATE. */
    uow__sql_select(sql, &sqlite_dialect, key->entity, key->text, key->kind == STMT_SELECT_KEY,
                    false);
    break;
  case STMT_EXEC:
    break;
  }
  if (uow__buf_status(sql))
    return uow_status_set(st, UOW_ENOMEM, "out of memory building SQL for \"%s\"",
                          key->entity->table);
  *out = sql->data;
  return UOW_OK;
}

/* The statement for `key`: from the cache, or prepared once and cached. It is
 * idle; the caller must finish() it after use, also on errors. */
static int statement_for(uow_store_conn *conn, const stmt_key *key, sqlite3_stmt **out,
                         uow_status *st) {
  uint64_t hash = key_hash(key);
  cached_stmt *entry = uow__map_get(&conn->cache, hash, key_equal, key);
  sqlite3_stmt *stmt = NULL;
  const char *sql = NULL;
  int rc;
  if (entry) {
    if (sqlite3_stmt_busy(entry->stmt))
      return uow_status_set(st, UOW_EMISUSE,
                            "statement already in use (a call on the connection from inside a "
                            "row callback?)");
    *out = entry->stmt;
    return UOW_OK;
  }
  cache_make_room(conn);
  rc = statement_text(conn, key, &sql, st);
  if (!rc)
    rc = prepare_one(conn, sql, &stmt, st);
  if (rc)
    return rc;
  entry = uow__calloc(1, sizeof(*entry));
  if (!entry)
    goto nomem;
  entry->stmt = stmt;
  entry->hash = hash;
  entry->key = *key;
  if (keyed_by_text(key->kind)) {
    entry->owned_text = uow__strdup(key->text);
    if (!entry->owned_text)
      goto nomem;
    entry->key.text = entry->owned_text;
  }
  if (uow__map_put(&conn->cache, hash, entry))
    goto nomem;
  cached_stmt **list = keyed_by_text(key->kind) ? &conn->texts : &conn->shaped;
  entry->next = *list;
  *list = entry;
  *out = stmt;
  return UOW_OK;
nomem:
  if (entry)
    cached_free(entry); /* finalizes stmt */
  else
    sqlite3_finalize(stmt);
  return uow_status_set(st, UOW_ENOMEM, "out of memory caching a SQLite statement");
}

/* ---- binding and stepping ---- */

/* Return a statement to idle: reset releases the locks a read holds, and
 * clearing the bindings drops the pointers to the caller's bytes (bound
 * SQLITE_STATIC, so they are never copied). */
static void finish(sqlite3_stmt *stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

/* Text and blobs, bound where they are (SQLITE_STATIC). */
static int bind_bytes(sqlite3_stmt *stmt, int i, const uow_value *v) {
  /* Empty text or blob may come with a NULL pointer; SQLite would bind that as NULL. */
  const void *data = v->v.bytes.data ? v->v.bytes.data : "";
  sqlite3_uint64 size = v->v.bytes.data ? v->v.bytes.size : 0;
  /* SQLite reads a size of 2^63 or more as negative, that is "up to a NUL":
   * keep it positive, so that it refuses it as too big (SQLITE_TOOBIG). */
  if (size > (sqlite3_uint64)INT64_MAX)
    size = (sqlite3_uint64)INT64_MAX;
  if (v->type == UOW_TEXT)
    return sqlite3_bind_text64(stmt, i, data, size, SQLITE_STATIC, SQLITE_UTF8);
  return sqlite3_bind_blob64(stmt, i, data, size, SQLITE_STATIC);
}

/* Inline: a bulk INSERT binds every value of every row through it. */
static inline int bind_value(sqlite3_stmt *stmt, int i, const uow_value *v) {
  if (v->is_null)
    return sqlite3_bind_null(stmt, i);
  switch (v->type) {
  case UOW_INT64:
    return sqlite3_bind_int64(stmt, i, v->v.i);
  case UOW_DOUBLE:
    return sqlite3_bind_double(stmt, i, v->v.d);
  case UOW_BOOL:
    return sqlite3_bind_int(stmt, i, v->v.b ? 1 : 0);
  case UOW_TEXT:
  case UOW_BLOB:
    return bind_bytes(stmt, i, v);
  }
  return SQLITE_MISMATCH;
}

/* How an INSERT that comes as its object (UOW_STORE_OBJECTS) binds a member,
 * worked out once per statement: a bulk INSERT binds thousands, and the
 * common columns then go straight to SQLite. Text is bound by its NUL:
 * SQLite measures it, as the core would have for a value. The same NULLs as
 * uow_column_value: a nullable integer's 0, no text. */
typedef enum { BIND_INT64, BIND_INT64_OR_NULL, BIND_DOUBLE, BIND_TEXT, BIND_VALUE } bind_how;

typedef struct member_bind {
  size_t offset;
  bind_how how;
  const uow_column *col; /* BIND_VALUE: read as uow_column_value does */
} member_bind;

static member_bind member_bind_of(const uow_column *col) {
  bool nullable = col->flags & UOW_NULLABLE;
  member_bind b = {col->offset, BIND_VALUE, col};
  if (col->type == UOW_INT64)
    b.how = nullable ? BIND_INT64_OR_NULL : BIND_INT64;
  else if (col->type == UOW_DOUBLE && !nullable)
    b.how = BIND_DOUBLE;
  else if (col->type == UOW_TEXT)
    b.how = BIND_TEXT;
  return b;
}

static inline int bind_member(sqlite3_stmt *stmt, int i, const member_bind *b, const char *object) {
  const char *member = object + b->offset;
  switch (b->how) {
  case BIND_INT64:
  case BIND_INT64_OR_NULL: {
    int64_t v;
    memcpy(&v, member, sizeof(v));
    return b->how == BIND_INT64_OR_NULL && v == 0 ? sqlite3_bind_null(stmt, i)
                                                  : sqlite3_bind_int64(stmt, i, v);
  }
  case BIND_DOUBLE: {
    double d;
    memcpy(&d, member, sizeof(d));
    return sqlite3_bind_double(stmt, i, d);
  }
  case BIND_TEXT: {
    const char *s;
    memcpy(&s, member, sizeof(s));
    return s ? sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(stmt, i);
  }
  case BIND_VALUE:
    break;
  }
  uow_value v = uow__column_value(b->col, object);
  return bind_value(stmt, i, &v);
}

static int bind_params(uow_store_conn *conn, sqlite3_stmt *stmt, const uow_value *params, size_t n,
                       uow_status *st) {
  int expected = sqlite3_bind_parameter_count(stmt);
  if ((size_t)expected != n || (n && !params))
    return uow_status_set(st, UOW_EINVAL, "the statement has %d parameters but %zu were given",
                          expected, n);
  for (size_t i = 0; i < n; i++) {
    if (params[i].type < UOW_INT64 || params[i].type > UOW_BOOL)
      return uow_status_set(st, UOW_EINVAL, "parameter %zu has an unknown type (%d)", i + 1,
                            (int)params[i].type);
    int src = bind_value(stmt, (int)i + 1, &params[i]);
    if (src != SQLITE_OK)
      return sqlite_failure(conn, src, NULL, st);
  }
  return UOW_OK;
}

/* Step to the end, ignoring rows, and leave the statement idle. */
static int run_to_done(uow_store_conn *conn, sqlite3_stmt *stmt, uow_status *st) {
  int src;
  int rc = UOW_OK;
  while ((src = sqlite3_step(stmt)) == SQLITE_ROW)
    ;
  if (src != SQLITE_DONE)
    rc = sqlite_failure(conn, src, NULL, st);
  finish(stmt);
  return rc;
}

/* Run a text statement (exec, savepoints) through the cache. */
static int run_text(uow_store_conn *conn, const char *sql, const uow_value *params, size_t n,
                    int64_t *affected, uow_status *st) {
  stmt_key key = {STMT_EXEC, NULL, 0, false, sql, 0};
  sqlite3_stmt *stmt;
  int rc = statement_for(conn, &key, &stmt, st);
  if (rc)
    return rc;
  rc = bind_params(conn, stmt, params, n, st);
  if (rc) {
    finish(stmt);
    return rc;
  }
  /* sqlite3_changes64 keeps the count of the last INSERT, UPDATE or DELETE, so a
   * statement that changed nothing (a SELECT, DDL) would report an older count. */
  sqlite3_int64 before = sqlite3_total_changes64(conn->db);
  rc = run_to_done(conn, stmt, st);
  if (!rc && affected)
    *affected = sqlite3_total_changes64(conn->db) == before ? 0 : sqlite3_changes64(conn->db);
  return rc;
}

/* ---- reads ---- */

/* Column values of the current row, converted to each column's declared type.
 * Text and blob point into SQLite's row, valid until the next step. */
static int row_values(uow_store_conn *conn, const uow_entity *entity, sqlite3_stmt *stmt,
                      uow_value *row, uow_status *st) {
  for (size_t i = 0; i < entity->ncolumns; i++) {
    uow_value *v = &row[i];
    int col = (int)i;
    const void *data;
    memset(v, 0, sizeof(*v));
    v->type = entity->columns[i].type;
    /* A NULL reads as 0 from sqlite3_column_int64 and _double, which is what
     * a column that cannot be NULL gets anyway: only nullable numbers ask
     * for the type (a call per value otherwise; text asks below). */
    if ((entity->columns[i].flags & UOW_NULLABLE) && v->type != UOW_TEXT && v->type != UOW_BLOB &&
        sqlite3_column_type(stmt, col) == SQLITE_NULL) {
      v->is_null = true;
      continue;
    }
    switch (v->type) {
    case UOW_INT64:
      v->v.i = sqlite3_column_int64(stmt, col);
      break;
    case UOW_DOUBLE:
      v->v.d = sqlite3_column_double(stmt, col);
      break;
    case UOW_BOOL:
      v->v.b = sqlite3_column_int64(stmt, col) != 0;
      break;
    case UOW_TEXT:
    case UOW_BLOB:
      /* Pointer first, then size: the size is that of the converted value. */
      data = v->type == UOW_TEXT ? (const void *)sqlite3_column_text(stmt, col)
                                 : sqlite3_column_blob(stmt, col);
      if (!data && sqlite3_column_type(stmt, col) == SQLITE_NULL) {
        v->is_null = true;
        break;
      }
      if (!data && sqlite3_errcode(conn->db) == SQLITE_NOMEM)
        return uow_status_set(st, UOW_ENOMEM, "out of memory reading column \"%s\" of \"%s\"",
                              entity->columns[i].name, entity->table);
      v->v.bytes.data = data ? data : ""; /* a zero-length blob comes back as NULL */
      v->v.bytes.size = (size_t)sqlite3_column_bytes(stmt, col);
      break;
    }
  }
  return UOW_OK;
}

/* The key of the statement that reads `entity` as asked. */
static int read_key(const uow_entity *entity, const char *where, size_t nparams, stmt_key *key,
                    uow_status *st) {
  memset(key, 0, sizeof(*key));
  key->entity = entity;
  key->text = where;
  if (where)
    key->kind = STMT_SELECT_WHERE;
  else if (nparams == 1)
    key->kind = STMT_SELECT_KEY;
  else if (nparams == 0)
    key->kind = STMT_SELECT_ALL;
  else
    return uow_status_set(st, UOW_EINVAL, "read of \"%s\" by key with %zu parameters",
                          entity->table, nparams);
  return UOW_OK;
}

static int check_entity(const uow_entity *entity, uow_status *st) {
  if (!entity || entity->ncolumns == 0 || entity->ncolumns > MAX_COLUMNS)
    return uow_status_set(st, UOW_EINVAL, "entity \"%s\" must have 1 to %d columns",
                          entity ? entity->table : "(null)", MAX_COLUMNS);
  return UOW_OK;
}

static int sqlite_read(uow_store_conn *conn, const uow_entity *entity, const char *where,
                       const uow_value *params, size_t nparams, unsigned flags, uow_row_fn fn,
                       void *ctx, uow_status *st) {
  uow_value row[MAX_COLUMNS];
  stmt_key key;
  sqlite3_stmt *stmt = NULL;
  int src;
  (void)flags; /* UOW_FOR_UPDATE: the write lock comes from BEGIN IMMEDIATE */
  int rc = check_entity(entity, st);
  if (!rc)
    rc = check_transaction(conn, st);
  if (!rc)
    rc = read_key(entity, where, nparams, &key, st);
  if (!rc)
    rc = statement_for(conn, &key, &stmt, st);
  if (rc)
    return rc;
  rc = bind_params(conn, stmt, params, nparams, st);
  if (rc)
    goto done;
  while ((src = sqlite3_step(stmt)) == SQLITE_ROW) {
    rc = row_values(conn, entity, stmt, row, st);
    if (!rc)
      rc = fn(ctx, row);
    if (rc)
      goto done;
  }
  if (src != SQLITE_DONE)
    rc = sqlite_failure(conn, src, NULL, st);
done:
  finish(stmt);
  return rc;
}

/* Reads in turn: there is no round trip to save. Every statement is
 * prepared and its parameters counted first, so that a bad read fails the
 * call before any read has run. */
static int sqlite_read_many(uow_store_conn *conn, const uow_read *reads, size_t n, size_t *failed,
                            uow_status *st) {
  *failed = n;
  for (size_t i = 0; i < n; i++) {
    const uow_read *r = &reads[i];
    stmt_key key;
    sqlite3_stmt *stmt = NULL;
    int rc = check_entity(r->entity, st);
    if (!rc)
      rc = read_key(r->entity, r->where, r->nparams, &key, st);
    if (!rc)
      rc = statement_for(conn, &key, &stmt, st);
    if (!rc && (size_t)sqlite3_bind_parameter_count(stmt) != r->nparams)
      rc = uow_status_set(st, UOW_EINVAL, "the statement has %d parameters but %zu were given",
                          sqlite3_bind_parameter_count(stmt), r->nparams);
    if (rc) {
      *failed = i;
      return rc;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const uow_read *r = &reads[i];
    int rc =
        sqlite_read(conn, r->entity, r->where, r->params, r->nparams, r->flags, r->fn, r->ctx, st);
    if (rc) {
      *failed = i;
      return rc;
    }
  }
  return UOW_OK;
}

/* ---- writes ---- */

static int check_write(const uow_write *w, uow_status *st) {
  int rc = check_entity(w->entity, st);
  if (rc)
    return rc;
  if (w->kind != UOW_WRITE_INSERT && w->kind != UOW_WRITE_UPDATE && w->kind != UOW_WRITE_DELETE)
    return uow_status_set(st, UOW_EINVAL, "unknown write kind %d for \"%s\"", (int)w->kind,
                          w->entity->table);
  return UOW_OK;
}

/* An INSERT that leaves its generated key to SQLite: the key is read back
 * with sqlite3_last_insert_rowid, so it goes alone in its statement. */
static bool needs_rowid(const uow_write *w) {
  size_t key_index = uow__entity_key_index(w->entity);
  return w->kind == UOW_WRITE_INSERT && !(w->columns & (UINT64_C(1) << key_index)) &&
         (w->entity->columns[key_index].flags & UOW_GENERATED);
}

/* Bind the parameters of `rows` writes of one shape, one after another.
 * Every parameter is bound each time, so nothing stale can be stepped. */
static int bind_writes(uow_store_conn *conn, sqlite3_stmt *stmt, const uow_write *w, size_t rows,
                       uow_status *st) {
  uow_value params[MAX_COLUMNS + 2];
  unsigned char columns[MAX_COLUMNS]; /* an INSERT's: the columns it sends, in order */
  member_bind sent[MAX_COLUMNS];      /* and how to bind them from an object */
  size_t per_row = 0;
  if (w->kind == UOW_WRITE_INSERT) {
    for (uint64_t m = w->columns; m; m &= m - 1, per_row++) {
      columns[per_row] = (unsigned char)__builtin_ctzll(m);
      sent[per_row] = member_bind_of(&w->entity->columns[columns[per_row]]);
    }
  } else {
    per_row = uow__sql_write_params(w, params); /* alone in its statement */
  }
  const int count = sqlite3_bind_parameter_count(stmt);
  if ((size_t)count != per_row * rows)
    return uow_status_set(
        st, UOW_EINVAL, "the statement for \"%s\" has %d parameters but the writes have %s",
        w->entity->table, count, (size_t)count < per_row * rows ? "more" : "fewer");
  int src = SQLITE_OK;
  int at = 0;
  if (w->kind != UOW_WRITE_INSERT) {
    for (size_t i = 0; i < per_row && src == SQLITE_OK; i++)
      src = bind_value(stmt, ++at, &params[i]);
  } else {
    /* The rows of one statement send the same columns (write_run), and an
     * INSERT's values, or its object's members, are bound where they are
     * rather than copied first. */
    for (size_t r = 0; r < rows && src == SQLITE_OK; r++) {
      const uow_value *values = w[r].values;
      const char *object = w[r].object;
      if (values)
        for (size_t j = 0; j < per_row && src == SQLITE_OK; j++)
          src = bind_value(stmt, ++at, &values[columns[j]]);
      else
        for (size_t j = 0; j < per_row && src == SQLITE_OK; j++)
          src = bind_member(stmt, ++at, &sent[j], object);
    }
  }
  return src == SQLITE_OK ? UOW_OK : sqlite_failure(conn, src, NULL, st);
}

/* One statement for `rows` writes of the same shape (rows > 1: INSERTs only). */
static int write_rows(uow_store_conn *conn, uow_write *w, size_t rows, uow_status *st) {
  sqlite3_stmt *stmt;
  /* Normalised so that equal statements share one cache entry. */
  stmt_key key = {(stmt_kind)w->kind,
                  w->entity,
                  w->kind == UOW_WRITE_DELETE ? 0 : w->columns,
                  w->kind != UOW_WRITE_INSERT && w->check_version,
                  NULL,
                  rows > 1 ? rows : 0};
  int rc = statement_for(conn, &key, &stmt, st);
  if (rc)
    return rc;
  rc = bind_writes(conn, stmt, w, rows, st);
  if (rc) {
    finish(stmt);
    return rc;
  }
  int src;
  while ((src = sqlite3_step(stmt)) == SQLITE_ROW)
    ;
  rc = src == SQLITE_DONE ? UOW_OK : sqlite_failure(conn, src, NULL, st);
  /* Only reset: every use binds every parameter again (bind_writes), so
   * clearing the bindings would be wasted work on each row. */
  sqlite3_reset(stmt);
  if (rc)
    return rc;
  int64_t affected = sqlite3_changes64(conn->db);
  if (w->kind != UOW_WRITE_INSERT) {
    w->affected = affected;
    return affected ? UOW_OK : uow__sql_stale_row(w, st);
  }
  if (affected != (int64_t)rows)
    return uow_status_set(st, UOW_EIO, "INSERT into \"%s\" inserted %" PRId64 " rows, expected %zu",
                          w->entity->table, affected, rows);
  for (size_t r = 0; r < rows; r++)
    w[r].affected = 1;
  if (needs_rowid(w))
    w->generated = sqlite3_last_insert_rowid(conn->db);
  return UOW_OK;
}

/* Rows per INSERT for writes of w's shape: INSERT_ROWS_MAX, or fewer when
 * SQLite's limit on parameters per statement is lower. */
static size_t insert_rows_max(uow_store_conn *conn, const uow_write *w) {
  uint64_t columns = w->columns;
  size_t per_row = 0;
  for (; columns; columns &= columns - 1)
    per_row++;
  int limit = sqlite3_limit(conn->db, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
  size_t rows = per_row && limit > 0 ? (size_t)limit / per_row : 1;
  return rows < 1 ? 1 : rows < INSERT_ROWS_MAX ? rows : INSERT_ROWS_MAX;
}

/* A full statement, else the largest power of two that fits: remainders then
 * take a handful of cached statements per shape instead of one per count. */
static size_t chunk_rows(size_t remaining, size_t max) {
  if (remaining >= max)
    return max;
  size_t rows = 1;
  while (rows * 2 <= remaining)
    rows *= 2;
  return rows;
}

/* writes[0] and the INSERTs of the same shape right after it (only
 * neighbours: the core's order is kept), as few statements as the limits
 * allow; an INSERT that needs its generated key goes alone. Sets *taken. */
static int write_run(uow_store_conn *conn, uow_write *w, size_t n, size_t *taken, uow_status *st) {
  size_t run = 1;
  int rc = check_write(w, st);
  if (!rc && w->kind == UOW_WRITE_INSERT && !needs_rowid(w))
    while (run < n && w[run].kind == UOW_WRITE_INSERT && w[run].entity == w->entity &&
           w[run].columns == w->columns)
      run++;
  size_t max = run > 1 ? insert_rows_max(conn, w) : 1;
  for (size_t done = 0; !rc && done < run;) {
    size_t rows = chunk_rows(run - done, max);
    rc = write_rows(conn, w + done, rows, st);
    done += rows;
  }
  *taken = run;
  return rc;
}

/* ---- the ops ---- */

static void sqlite_close(uow_store_driver *drv) {
  if (!drv)
    return;
  connection_free(drv->resident);
  uow__free(drv->path);
  uow__free(drv);
}

static int sqlite_open(const char *url, const uow_store_config *cfg, uow_store_driver **out,
                       uow_status *st) {
  uow_store_conn *conn = NULL;
  int rc;
  (void)cfg; /* the core puts the store's name in front of our messages */
  *out = NULL;
  uow_store_driver *drv = uow__calloc(1, sizeof(*drv));
  if (!drv)
    return uow_status_set(st, UOW_ENOMEM, "out of memory opening a SQLite store");
  atomic_init(&drv->resident_lent, false);
  rc = url ? parse_url(drv, url, st) : uow_status_set(st, UOW_EINVAL, "no sqlite URL");
  if (rc)
    goto fail;
  /* Connect once now, so that a bad path or a file that is not a database
   * fails here and not in the first unit. */
  rc = connection_open(drv, &conn, st);
  if (rc)
    goto fail;
  if (drv->memory) {
    conn->resident = true;
    drv->resident = conn;
  } else {
    connection_free(conn);
  }
  *out = drv;
  return UOW_OK;
fail:
  sqlite_close(drv);
  return rc;
}

static unsigned sqlite_max_connections(uow_store_driver *drv) { return drv->memory ? 1 : 0; }

static int sqlite_connect(uow_store_driver *drv, uow_store_conn **out, uow_status *st) {
  *out = NULL;
  if (!drv->memory)
    return connection_open(drv, out, st);
  if (atomic_exchange(&drv->resident_lent, true))
    return uow_status_set(st, UOW_EMISUSE,
                          "sqlite::memory: has one connection and it is in use "
                          "(max_connections is 1)");
  *out = drv->resident;
  return UOW_OK;
}

static int sqlite_rollback(uow_store_conn *conn, uow_status *st) {
  int rc = UOW_OK;
  /* No transaction (never begun, or already rolled back by SQLite) is what rollback wants. */
  if (!sqlite3_get_autocommit(conn->db)) {
    rc = run_to_done(conn, conn->fixed[FIXED_ROLLBACK], st);
    if (rc && sqlite3_get_autocommit(conn->db))
      rc = UOW_OK;
  }
  if (!rc) {
    conn->in_tx = false;
    conn->lost_rc = 0;
  }
  return rc;
}

static void sqlite_disconnect(uow_store_conn *conn) {
  if (!conn)
    return;
  if (!conn->resident) {
    connection_free(conn);
    return;
  }
  /* The resident connection is the :memory: database itself: hand it back clean, keep it open. */
  sqlite_rollback(conn, NULL);
  atomic_store(&conn->drv->resident_lent, false);
}

/* A connection with a transaction still open is not reused: it would hold locks. */
static bool sqlite_healthy(uow_store_conn *conn) {
  return conn && !conn->fatal && sqlite3_get_autocommit(conn->db);
}

static int sqlite_begin(uow_store_conn *conn, uow_isolation isolation, unsigned flags,
                        uow_status *st) {
  (void)isolation; /* SQLite is always serializable */
  int which = (flags & UOW_FOR_UPDATE) ? FIXED_BEGIN_IMMEDIATE : FIXED_BEGIN;
  int rc = run_to_done(conn, conn->fixed[which], st);
  if (!rc) {
    conn->in_tx = true;
    conn->lost_rc = 0;
  }
  return rc;
}

/* Whether a COMMIT that failed with `src` may have committed all the same.
 * In WAL mode the commit record is a frame appended to the log, then synced,
 * then published in the shared-memory index. When the sync or the index
 * fails, this process sees the transaction rolled back, but the frame may be
 * in the file: if the process dies before the log is written over or
 * checkpointed, WAL recovery at the next open keeps it. (A rollback journal
 * has no such window: a failure before the journal is finalized leaves it
 * hot, and it is played back.) */
static bool commit_in_doubt(const uow_store_conn *conn, int src) {
  return strcmp(conn->drv->journal_mode, "wal") == 0 &&
         (src == SQLITE_IOERR_FSYNC || src == SQLITE_IOERR_SHMMAP || src == SQLITE_IOERR_SHMSIZE);
}

/* A failed COMMIT leaves the transaction open (SQLITE_BUSY) or rolled back,
 * never half done; but see commit_in_doubt() for whether it stays so. */
static int sqlite_commit(uow_store_conn *conn, uow_status *st) {
  char name[96];
  int rc = check_transaction(conn, st);
  if (rc)
    return rc;
  rc = run_to_done(conn, conn->fixed[FIXED_COMMIT], st);
  int src = rc ? sqlite3_extended_errcode(conn->db) : SQLITE_OK;
  if (!rc)
    conn->in_tx = false;
  else if (commit_in_doubt(conn, src))
    rc = uow_status_set(st, UOW_EINDOUBT,
                        "%s (%s) while making the commit durable: SQLite rolled it back in this "
                        "process, but its record may be in the write-ahead log, where recovery "
                        "after a crash would keep it",
                        sqlite3_errmsg(conn->db), code_name(src, name, sizeof(name)));
  return rc;
}

/* Run "VERB uow_sp_LEVEL" inside the unit's transaction. */
static int savepoint_statement(uow_store_conn *conn, const char *verb, unsigned level,
                               uow_status *st) {
  char sql[48];
  int rc = check_transaction(conn, st);
  if (rc)
    return rc;
  /* Outside a transaction SAVEPOINT would silently start one. */
  if (!conn->in_tx)
    return uow_status_set(st, UOW_EMISUSE, "%s uow_sp_%u: no transaction is open", verb, level);
  snprintf(sql, sizeof(sql), "%s uow_sp_%u", verb, level);
  return run_text(conn, sql, NULL, 0, NULL, st);
}

static int sqlite_savepoint(uow_store_conn *conn, unsigned level, uow_status *st) {
  return savepoint_statement(conn, "SAVEPOINT", level, st);
}

static int sqlite_release(uow_store_conn *conn, unsigned level, uow_status *st) {
  return savepoint_statement(conn, "RELEASE", level, st);
}

/* ROLLBACK TO keeps the savepoint open; the interface closes it too. */
static int sqlite_rollback_to(uow_store_conn *conn, unsigned level, uow_status *st) {
  int rc = savepoint_statement(conn, "ROLLBACK TO", level, st);
  if (!rc)
    rc = savepoint_statement(conn, "RELEASE", level, st);
  return rc;
}

static int sqlite_create_table(uow_store_conn *conn, const uow_entity *entity, uow_status *st) {
  uow_buf sql;
  uow__buf_init(&sql);
  int rc = check_entity(entity, st);
  if (!rc)
    rc = check_transaction(conn, st);
  if (rc)
    goto done;
  uow__sql_create_table(&sql, &sqlite_dialect, entity);
  if (uow__buf_status(&sql)) {
    rc =
        uow_status_set(st, UOW_ENOMEM, "out of memory building CREATE TABLE \"%s\"", entity->table);
    goto done;
  }
  /* Outside the cache: it runs once per table and would only take a slot. */
  rc = run_once(conn, sql.data, st);
done:
  uow__buf_free(&sql);
  return rc;
}

static int sqlite_write(uow_store_conn *conn, uow_write *writes, size_t n, bool commit,
                        uow_status *st) {
  int rc = check_transaction(conn, st);
  for (size_t i = 0, taken = 0; !rc && i < n; i += taken)
    rc = write_run(conn, writes + i, n - i, &taken, st);
  if (!rc && commit)
    rc = sqlite_commit(conn, st);
  return rc;
}

static int sqlite_exec(uow_store_conn *conn, const char *sql, const uow_value *params,
                       size_t nparams, int64_t *affected, uow_status *st) {
  int rc = check_transaction(conn, st);
  if (rc)
    return rc;
  if (!sql)
    return uow_status_set(st, UOW_EINVAL, "no SQL statement");
  rc = run_text(conn, sql, params, nparams, affected, st);
  /* Say so at the statement that ended the transaction, not at the next one. */
  return rc ? rc : check_transaction(conn, st);
}

static int sqlite_query_int64(uow_store_conn *conn, const char *sql, const uow_value *params,
                              size_t nparams, int64_t *out, uow_status *st) {
  if (!sql || !out)
    return uow_status_set(st, UOW_EINVAL, "query: no SQL statement or no result pointer");
  int rc = check_transaction(conn, st);
  stmt_key key = {STMT_EXEC, NULL, 0, false, sql, 0};
  sqlite3_stmt *stmt;
  if (rc || (rc = statement_for(conn, &key, &stmt, st)))
    return rc;
  if ((rc = bind_params(conn, stmt, params, nparams, st))) {
    finish(stmt);
    return rc;
  }
  int src = sqlite3_step(stmt);
  if (src == SQLITE_ROW && sqlite3_column_count(stmt) >= 1 &&
      sqlite3_column_type(stmt, 0) == SQLITE_INTEGER)
    *out = sqlite3_column_int64(stmt, 0);
  else if (src == SQLITE_ROW || src == SQLITE_DONE)
    rc = uow_status_set(st, UOW_EIO, "the query did not return one integer: \"%s\"", sql);
  else
    rc = sqlite_failure(conn, src, sql, st);
  finish(stmt);
  return rc;
}

/* In-process: there is no server to make round trips to. */
static uint64_t sqlite_round_trips(uow_store_conn *conn) {
  (void)conn;
  return 0;
}

/* Declared by the core, which registers it; repeated here for -Wmissing-variable-declarations. */
extern const uow_store_ops uow__sqlite_store;

const uow_store_ops uow__sqlite_store = {
    .abi = UOW_STORE_ABI,
    .scheme = "sqlite",
    .alias = NULL,
    .caps = UOW_STORE_TRANSACTIONAL | UOW_STORE_SQL | UOW_STORE_OBJECTS,
    .open = sqlite_open,
    .close = sqlite_close,
    .max_connections = sqlite_max_connections,
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .healthy = sqlite_healthy,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .savepoint = sqlite_savepoint,
    .release = sqlite_release,
    .rollback_to = sqlite_rollback_to,
    .prepare = NULL,
    .commit_prepared = NULL,
    .rollback_prepared = NULL,
    .list_prepared = NULL,
    .create_table = sqlite_create_table,
    .read = sqlite_read,
    .write = sqlite_write,
    .exec = sqlite_exec,
    .round_trips = sqlite_round_trips,
    .prepare_ready = NULL,
    .query_int64 = sqlite_query_int64,
    .read_many = sqlite_read_many,
};
