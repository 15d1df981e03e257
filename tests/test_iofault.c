/*
 * test_iofault.c - I/O-error torture for the SQLite store.
 *
 * A VFS shim, registered as SQLite's default so that the library opens every
 * file through it, wraps the real default VFS and its files. It counts the
 * calls of one kind (xRead, xWrite, xSync; also xOpen, xShmMap, xShmLock)
 * and fails the Nth one with SQLite's own code (SQLITE_IOERR_READ, _WRITE,
 * _FSYNC, ...): once (a transient fault) or from then on (a disk that went
 * away). A realistic unit (get, change, a flushed insert, new rows with a
 * parent, an event, commit) runs on a fresh database once for every call it
 * makes, that call failing, until a run finds no call left to fail. Every run
 * must return a proper code whose message carries SQLite's detail, leak
 * nothing (the sanitizer build runs with LeakSanitizer), and leave a database
 * that passes PRAGMA integrity_check and holds all of the unit or none of it:
 * all when uow_commit returned 0, none when it said "nothing was written",
 * either when it said UOW_EINDOUBT. Each sweep runs with the process carrying
 * on (the environment must serve the next unit, then close with its calls
 * failing too), and with the process dying right after the unit (a forked
 * child is killed; the database is opened afresh, WAL recovery included).
 *
 * The sweeps run in WAL mode, as the library configures SQLite, and with a
 * rollback journal; and with a PostgreSQL participant that SQLite decides,
 * where both stores must agree after uow_recover(): the unit in both or in
 * neither.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "multistore.h"
#include "support.h"

/* ---- the VFS shim ---- */

typedef enum fault_kind {
  FAULT_READ,
  FAULT_WRITE,
  FAULT_SYNC,
  FAULT_OPEN,     /* xOpen of the database, its WAL or journal */
  FAULT_SHM_MAP,  /* xShmMap of the WAL index */
  FAULT_SHM_LOCK, /* xShmLock taking a lock (releasing one always works) */
  FAULT_KINDS
} fault_kind;

/* What the shim answers, and what the library's message must then carry. */
static const struct {
  const char *name;   /* for messages: "reads" */
  int code;           /* the SQLite code the failing call returns */
  const char *symbol; /* its name, which the message must show */
  const char *detail; /* sqlite3_errmsg() for it, which the message must show */
} faults[FAULT_KINDS] = {
    {"reads", SQLITE_IOERR_READ, "SQLITE_IOERR_READ", "disk I/O error"},
    {"writes", SQLITE_IOERR_WRITE, "SQLITE_IOERR_WRITE", "disk I/O error"},
    {"syncs", SQLITE_IOERR_FSYNC, "SQLITE_IOERR_FSYNC", "disk I/O error"},
    {"opens", SQLITE_CANTOPEN, "SQLITE_CANTOPEN", "unable to open database file"},
    {"shared-memory maps", SQLITE_IOERR_SHMMAP, "SQLITE_IOERR_SHMMAP", "disk I/O error"},
    {"shared-memory locks", SQLITE_IOERR_SHMLOCK, "SQLITE_IOERR_SHMLOCK", "disk I/O error"},
};

/* A file of the shim: the real VFS's file follows it in the same block. */
typedef struct shim_file {
  sqlite3_file base;
  sqlite3_file *real;
} shim_file;

/* Where the real file starts: past the shim's part, 8-byte aligned. */
#define SHIM_FILE_SIZE ((sizeof(shim_file) + 7) & ~(size_t)7)

static struct {
  sqlite3_vfs vfs;
  sqlite3_vfs *real;
  bool armed;
  fault_kind kind;
  long fail_at;    /* the call of `kind` that fails, 1-based */
  bool persistent; /* every call after it fails too */
  long calls;      /* calls of `kind` while armed */
  long injected;   /* failures returned */
} shim;

/* The code the shim answers a call of `kind` with: SQLITE_OK lets it through. */
static int shim_fault(fault_kind kind) {
  if (!shim.armed || kind != shim.kind)
    return SQLITE_OK;
  long n = ++shim.calls;
  if (n == shim.fail_at || (shim.persistent && n > shim.fail_at)) {
    shim.injected++;
    return faults[kind].code;
  }
  return SQLITE_OK;
}

/* Fail call `fail_at` of `kind` from now on; the count starts at 0. */
static void shim_arm(fault_kind kind, long fail_at, bool persistent) {
  shim.kind = kind;
  shim.fail_at = fail_at;
  shim.persistent = persistent;
  shim.calls = 0;
  shim.injected = 0;
  shim.armed = true;
}

/* Stop failing calls; shim_resume() carries on counting where it stopped. */
static void shim_pause(void) { shim.armed = false; }
static void shim_resume(void) { shim.armed = true; }

static sqlite3_file *real_file(sqlite3_file *f) { return ((shim_file *)f)->real; }

static int shim_close(sqlite3_file *f) { return real_file(f)->pMethods->xClose(real_file(f)); }

static int shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
  int rc = shim_fault(FAULT_READ);
  return rc ? rc : real_file(f)->pMethods->xRead(real_file(f), buf, n, off);
}

static int shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
  int rc = shim_fault(FAULT_WRITE);
  return rc ? rc : real_file(f)->pMethods->xWrite(real_file(f), buf, n, off);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size) {
  return real_file(f)->pMethods->xTruncate(real_file(f), size);
}

static int shim_sync(sqlite3_file *f, int flags) {
  int rc = shim_fault(FAULT_SYNC);
  return rc ? rc : real_file(f)->pMethods->xSync(real_file(f), flags);
}

static int shim_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return real_file(f)->pMethods->xFileSize(real_file(f), size);
}

static int shim_lock(sqlite3_file *f, int level) {
  return real_file(f)->pMethods->xLock(real_file(f), level);
}

static int shim_unlock(sqlite3_file *f, int level) {
  return real_file(f)->pMethods->xUnlock(real_file(f), level);
}

static int shim_check_reserved_lock(sqlite3_file *f, int *out) {
  return real_file(f)->pMethods->xCheckReservedLock(real_file(f), out);
}

static int shim_file_control(sqlite3_file *f, int op, void *arg) {
  return real_file(f)->pMethods->xFileControl(real_file(f), op, arg);
}

static int shim_sector_size(sqlite3_file *f) {
  return real_file(f)->pMethods->xSectorSize(real_file(f));
}

static int shim_device_characteristics(sqlite3_file *f) {
  return real_file(f)->pMethods->xDeviceCharacteristics(real_file(f));
}

static int shim_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out) {
  int rc = shim_fault(FAULT_SHM_MAP);
  return rc ? rc : real_file(f)->pMethods->xShmMap(real_file(f), region, size, extend, out);
}

static int shim_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  int rc = (flags & SQLITE_SHM_LOCK) ? shim_fault(FAULT_SHM_LOCK) : SQLITE_OK;
  return rc ? rc : real_file(f)->pMethods->xShmLock(real_file(f), offset, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f) { real_file(f)->pMethods->xShmBarrier(real_file(f)); }

static int shim_shm_unmap(sqlite3_file *f, int delete_flag) {
  return real_file(f)->pMethods->xShmUnmap(real_file(f), delete_flag);
}

static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out) {
  return real_file(f)->pMethods->xFetch(real_file(f), off, n, out);
}

static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  return real_file(f)->pMethods->xUnfetch(real_file(f), off, p);
}

static const sqlite3_io_methods shim_methods = {
    3,
    shim_close,
    shim_read,
    shim_write,
    shim_truncate,
    shim_sync,
    shim_file_size,
    shim_lock,
    shim_unlock,
    shim_check_reserved_lock,
    shim_file_control,
    shim_sector_size,
    shim_device_characteristics,
    shim_shm_map,
    shim_shm_lock,
    shim_shm_barrier,
    shim_shm_unmap,
    shim_fetch,
    shim_unfetch,
};

/* The real VFS's functions get the real VFS: unix reads its own pAppData. */
static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
  (void)vfs;
  shim_file *file = (shim_file *)f;
  file->real = (sqlite3_file *)((char *)f + SHIM_FILE_SIZE);
  file->real->pMethods = NULL;
  int rc = shim_fault(FAULT_OPEN);
  if (!rc)
    rc = shim.real->xOpen(shim.real, name, file->real, flags, out);
  /* SQLite calls xClose whenever pMethods is set, also after a failed open. */
  file->base.pMethods = file->real->pMethods ? &shim_methods : NULL;
  return rc;
}

static int shim_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  return shim.real->xDelete(shim.real, name, sync_dir);
}

static int shim_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
  (void)vfs;
  return shim.real->xAccess(shim.real, name, flags, out);
}

static int shim_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
  (void)vfs;
  return shim.real->xFullPathname(shim.real, name, n, out);
}

static void *shim_dl_open(sqlite3_vfs *vfs, const char *name) {
  (void)vfs;
  return shim.real->xDlOpen(shim.real, name);
}

static void shim_dl_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  shim.real->xDlError(shim.real, n, out);
}

static void (*shim_dl_sym(sqlite3_vfs *vfs, void *handle, const char *sym))(void) {
  (void)vfs;
  return shim.real->xDlSym(shim.real, handle, sym);
}

static void shim_dl_close(sqlite3_vfs *vfs, void *handle) {
  (void)vfs;
  shim.real->xDlClose(shim.real, handle);
}

static int shim_randomness(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return shim.real->xRandomness(shim.real, n, out);
}

static int shim_sleep(sqlite3_vfs *vfs, int us) {
  (void)vfs;
  return shim.real->xSleep(shim.real, us);
}

static int shim_current_time(sqlite3_vfs *vfs, double *out) {
  (void)vfs;
  return shim.real->xCurrentTime(shim.real, out);
}

static int shim_last_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return shim.real->xGetLastError(shim.real, n, out);
}

static int shim_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
  (void)vfs;
  return shim.real->xCurrentTimeInt64(shim.real, out);
}

/* Make the shim SQLite's default VFS, in front of the default it had. */
static int shim_register(void **state) {
  (void)state;
  shim.real = sqlite3_vfs_find(NULL);
  if (!shim.real || shim.real->iVersion < 2)
    return -1;
  sqlite3_vfs *v = &shim.vfs;
  memset(v, 0, sizeof(*v));
  v->iVersion = 2;
  v->szOsFile = (int)(SHIM_FILE_SIZE + (size_t)shim.real->szOsFile);
  v->mxPathname = shim.real->mxPathname;
  v->zName = "iofault";
  v->xOpen = shim_open;
  v->xDelete = shim_delete;
  v->xAccess = shim_access;
  v->xFullPathname = shim_full_pathname;
  v->xDlOpen = shim_dl_open;
  v->xDlError = shim_dl_error;
  v->xDlSym = shim_dl_sym;
  v->xDlClose = shim_dl_close;
  v->xRandomness = shim_randomness;
  v->xSleep = shim_sleep;
  v->xCurrentTime = shim_current_time;
  v->xGetLastError = shim_last_error;
  v->xCurrentTimeInt64 = shim_current_time_int64;
  return sqlite3_vfs_register(v, 1) == SQLITE_OK ? 0 : -1;
}

static int shim_unregister(void **state) {
  (void)state;
  shim.armed = false;
  sqlite3_vfs_unregister(&shim.vfs);
  return 0;
}

/* ---- running a unit under the shim ---- */

/* What a unit did: its first failure, and how the failed unit behaved after it. */
typedef struct result {
  int rc;          /* the first failing call's code, else commit's 0 */
  char call[16];   /* which call: "begin", "body" (a verb of the unit) or "commit" */
  char msg[1024];  /* its message */
  int refused_rc;  /* a further call on the failed unit (UOW_EMISUSE expected) */
  int rollback_rc; /* uow_rollback on the failed unit (0 expected) */
  long injected;   /* failures the shim returned */
} result;

typedef int (*unit_body)(uow_unit *unit, void *arg);

static void record(result *r, int rc, const char *call, const char *msg) {
  r->rc = rc;
  snprintf(r->call, sizeof(r->call), "%s", call);
  snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

/* Begin, run `body`, commit. When `crashing`, return right after the failure
 * or the commit, leaving the unit as a process killed then would; otherwise
 * check that the failed unit refuses work, roll it back and end it. Asserts
 * nothing: a forked child runs it too. */
static void run_unit(uow_env *env, unit_body body, void *arg, bool crashing, result *r) {
  uow_unit *unit = NULL;
  memset(r, 0, sizeof(*r));
  int rc = uow_begin(env, &unit);
  if (rc)
    record(r, rc, "begin", uow_env_errmsg(env));
  else if ((rc = body(unit, arg)))
    record(r, rc, "body", uow_errmsg(unit));
  else if ((rc = uow_commit(unit)))
    record(r, rc, "commit", uow_errmsg(unit));
  else
    record(r, rc, "commit", "");
  if (crashing)
    return;
  if (rc && unit) {
    r->refused_rc = uow_flush(unit);
    r->rollback_rc = uow_rollback(unit);
  }
  uow_end(unit);
}

/* Check the code and message of one run: a proper code, SQLite's detail, the store. */
static void check_result(const result *r, fault_kind kind, const char *store, const char *what,
                         bool crashed) {
  if (r->rc == UOW_OK)
    return;
  if (r->rc != UOW_EIO && !(r->rc == UOW_EINDOUBT && strcmp(r->call, "commit") == 0))
    fail_msg("%s: %s returned %d (%s): %s", what, r->call, r->rc, uow_strerror(r->rc), r->msg);
  char where[96];
  snprintf(where, sizeof(where), "store '%s'", store);
  if (!strstr(r->msg, faults[kind].detail) || !strstr(r->msg, faults[kind].symbol) ||
      !strstr(r->msg, where))
    fail_msg("%s: the message of %s (%s) does not say \"%s\", %s and %s: %s", what, r->call,
             uow_strerror(r->rc), faults[kind].detail, faults[kind].symbol, where, r->msg);
  const char *after = r->rc == UOW_EINDOUBT            ? "the outcome is unknown"
                      : strcmp(r->call, "commit") == 0 ? "nothing was written"
                                                       : "the unit must be rolled back";
  if (!strstr(r->msg, after))
    fail_msg("%s: the message of %s does not say \"%s\": %s", what, r->call, after, r->msg);
  if (crashed)
    return;
  if (r->refused_rc != UOW_EMISUSE)
    fail_msg("%s: the failed unit accepted uow_flush (%d)", what, r->refused_rc);
  if (r->rollback_rc != UOW_OK)
    fail_msg("%s: uow_rollback of the failed unit returned %d", what, r->rollback_rc);
}

/* Fork a child that opens an environment with `open_env`, arms the shim, runs
 * the unit, reports, and kills itself right after it, as if the process died
 * there: SIGKILL runs no exit handlers, and a memory checker watching the child
 * has no chance to report the environment it never closed as leaked. */
static void run_unit_and_die(uow_env *(*open_env)(const void *), const void *world, unit_body body,
                             void *arg, fault_kind kind, long n, bool persistent, result *r) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    alarm(60); /* a child that hangs fails the test instead of the whole run */
    uow_env *env = open_env(world);
    if (!env)
      _exit(4);
    shim_arm(kind, n, persistent);
    result mine;
    run_unit(env, body, arg, true, &mine);
    mine.injected = shim.injected;
    if (write(fds[1], &mine, sizeof(mine)) != (ssize_t)sizeof(mine))
      _exit(3);
    raise(SIGKILL);
  }
  close(fds[1]);
  ssize_t got;
  do
    got = read(fds[0], r, sizeof(*r));
  while (got < 0 && errno == EINTR);
  close(fds[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL || got != (ssize_t)sizeof(*r))
    fail_msg("%s call %ld failing: the child died (status %d) before reporting", faults[kind].name,
             n, status);
}

/* ---- the oracle ---- */

/* PRAGMA integrity_check of the SQLite file at `path`, read directly. */
static void expect_integrity(const char *path, const char *what) {
  sqlite3 *db = NULL;
  sqlite3_stmt *stmt = NULL;
  char verdict[256] = "";
  int src = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(stmt)) == SQLITE_ROW)
    snprintf(verdict, sizeof(verdict), "%s", (const char *)sqlite3_column_text(stmt, 0));
  else
    snprintf(verdict, sizeof(verdict), "%s", db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (strcmp(verdict, "ok") != 0)
    fail_msg("%s: PRAGMA integrity_check: %s", what, verdict);
}

/* Whether each part of a unit is in the database: all of them, or none. */
typedef struct parts {
  const char *names[8];
  long found[8];    /* what the oracle counted */
  long expected[8]; /* the count when the unit is there; 0 when it is not */
  size_t n;
} parts;

static void part(parts *p, const char *name, long found, long expected) {
  p->names[p->n] = name;
  p->found[p->n] = found;
  p->expected[p->n] = expected;
  p->n++;
}

/* 1: every part is there; 0: none is; fails the test on anything in between. */
static bool whole_or_nothing(const parts *p, const char *what) {
  size_t there = 0, absent = 0;
  for (size_t i = 0; i < p->n; i++) {
    there += p->found[i] == p->expected[i];
    absent += p->found[i] == 0;
  }
  if (there != p->n && absent != p->n) {
    char state[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < p->n && len < sizeof(state); i++)
      len += (size_t)snprintf(state + len, sizeof(state) - len, "%s%s %ld of %ld", i ? ", " : "",
                              p->names[i], p->found[i], p->expected[i]);
    fail_msg("%s: a partial unit: %s", what, state);
  }
  return there == p->n;
}

/* What a run's code allows: 0 the whole unit, EINDOUBT either, else none. */
static void expect_outcome(const result *r, bool whole, const char *what) {
  if (r->rc == UOW_OK && !whole)
    fail_msg("%s: commit returned 0 but the unit is not in the database", what);
  if (r->rc != UOW_OK && r->rc != UOW_EINDOUBT && whole)
    fail_msg("%s: %s returned %s (\"%s\") but the whole unit is in the database", what, r->call,
             uow_strerror(r->rc), r->msg);
}

/* Counts of one sweep, for its summary line. */
typedef struct sweep {
  char name[96];      /* e.g. "writes, once" */
  long points;        /* calls that failed */
  long committed;     /* runs that left the unit in the database */
  long nothing;       /* runs that left nothing */
  long in_doubt;      /* runs that returned UOW_EINDOUBT */
  long kept_in_doubt; /* ... and left the unit in the database */
} sweep;

static void tally(sweep *s, const result *r, bool whole) {
  s->points++;
  s->in_doubt += r->rc == UOW_EINDOUBT;
  s->kept_in_doubt += r->rc == UOW_EINDOUBT && whole;
  if (whole)
    s->committed++;
  else
    s->nothing++;
}

static void summarize(const sweep *s) {
  print_message("%s: %ld failure points, 0 partial units (the unit kept %ld times, nothing "
                "kept %ld times; %ld were UOW_EINDOUBT)\n",
                s->name, s->points, s->committed, s->nothing, s->in_doubt);
}

/* ---- one SQLite store ---- */

enum { SEED_USERS = 200, SEATS = 10, MEMBER = 150 }; /* users enough for a tree of several pages */

/* A database file and the SQLite options of its URL. */
typedef struct database {
  char path[1024];
  const char *options; /* "" (WAL, as the library configures it) or "?journal_mode=delete" */
} database;

static void remove_database(const database *db) {
  const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    char file[1100];
    snprintf(file, sizeof(file), "%s%s", db->path, suffixes[i]);
    unlink(file);
  }
}

static void database_url(const database *db, char *url, size_t cap) {
  snprintf(url, cap, "sqlite:%s%s", db->path, db->options);
}

/* An environment with store "main" on the database, the entities mapped; NULL on failure. */
static uow_env *open_main(const void *arg) {
  char url[1200];
  database_url(arg, url, sizeof(url));
  uow_env *env = NULL;
  if (uow_env_open(NULL, &env))
    return NULL;
  const uow_entity *entities[] = {&user_entity, &course_entity, &enrollment_entity, &tag_entity};
  int rc = uow_env_add_store(env, "main", url);
  for (size_t i = 0; !rc && i < sizeof(entities) / sizeof(entities[0]); i++)
    rc = uow_env_map(env, entities[i], "main");
  if (rc) {
    fprintf(stderr, "open %s: %s\n", url, uow_env_errmsg(env));
    uow_env_close(env);
    return NULL;
  }
  return env;
}

static int seed(uow_unit *unit, void *arg) {
  (void)arg;
  course *c;
  int rc = uow_new(unit, &course_entity, (void **)&c);
  if (rc)
    return rc;
  c->title = "Databases";
  c->seats = SEATS;
  for (int i = 1; i <= SEED_USERS; i++) {
    user *u;
    if ((rc = uow_new(unit, &user_entity, (void **)&u)))
      return rc;
    char email[64];
    snprintf(email, sizeof(email), "user%d@example.com", i);
    u->email = uow_strdup(unit, email);
    u->name = "A. Learner";
    if (!u->email)
      return UOW_ENOMEM;
  }
  return UOW_OK;
}

/* A fresh database with the schema, course 1 and SEED_USERS users. No
 * connection stays open, so the unit under test starts cold and its reads
 * go to the file. */
static void fresh_database(database *db, const char *options) {
  static int runs;
  const char *dir = getenv("UOW_TEST_TMPDIR");
  snprintf(db->path, sizeof(db->path), "%s/run%d.db", dir && *dir ? dir : "/tmp", ++runs);
  db->options = options;
  remove_database(db); /* what an earlier, failed run left */
  uow_env *env = open_main(db);
  assert_non_null(env);
  EOK(env, uow_env_create_schema(env));
  EOK(env, uow_run(env, seed, NULL, NULL));
  uow_env_close(env);
}

/* The unit under test: a newcomer signs up (flushed at once for the id that
 * the event carries), a member's score goes up, two learners enroll into
 * course 1, which loses two seats, and an event says so. */
static int enroll(uow_unit *unit, void *arg) {
  (void)arg;
  int64_t course_id = 1, member_id = MEMBER;
  course *c;
  user *member, *newcomer;
  int rc;
  if ((rc = uow_get(unit, &course_entity, &course_id, (void **)&c)) ||
      (rc = uow_get(unit, &user_entity, &member_id, (void **)&member)) ||
      (rc = uow_new(unit, &user_entity, (void **)&newcomer)))
    return rc;
  newcomer->email = "newcomer@example.com";
  newcomer->name = "Newcomer";
  if ((rc = uow_flush(unit)))
    return rc;
  c->seats -= 2;
  member->score += 1;
  for (int i = 0; i < 2; i++) {
    enrollment *e;
    if ((rc = uow_new(unit, &enrollment_entity, (void **)&e)))
      return rc;
    e->course = c;
    e->learner = i ? "grace" : "ada";
  }
  char payload[64];
  int len = snprintf(payload, sizeof(payload), "{\"newcomer\":%lld,\"learners\":2}",
                     (long long)newcomer->id);
  return uow_emit(unit, "enrollment.created", "course-1", payload, (size_t)len);
}

/* The next unit of the same environment, after the failure. */
static int add_tag(uow_unit *unit, void *arg) {
  (void)arg;
  tag *t;
  int rc = uow_new(unit, &tag_entity, (void **)&t);
  if (!rc) {
    t->name = "after-failure";
    t->label = "the environment still works";
  }
  return rc;
}

/* Whether the database holds the unit of enroll(): all of it or none. */
static bool enrolled(const database *db, const char *what) {
  char url[1200];
  snprintf(url, sizeof(url), "sqlite:%s", db->path);
  parts p = {.n = 0};
  long seats = test_count_at(url, "courses", "id = 1 AND seats = 8");
  if (!seats && test_count_at(url, "courses", "id = 1 AND seats = 10") != 1)
    fail_msg("%s: course 1 has neither 10 nor 8 seats", what);
  part(&p, "seats taken", seats, 1);
  part(&p, "member's score", test_count_at(url, "users", "id = 150 AND score = 1"), 1);
  part(&p, "enrollments", test_count_at(url, "enrollments", "course_id = 1"), 2);
  part(&p, "newcomer", test_count_at(url, "users", "email = 'newcomer@example.com'"), 1);
  part(&p, "event", test_count_at(url, "uow_outbox", "topic = 'enrollment.created'"), 1);
  assert_int_equal(test_count_at(url, "users", "email LIKE 'user%'"), SEED_USERS);
  return whole_or_nothing(&p, what);
}

/* One sweep on one store: call 1, 2, ... of `kind` fails until a run has no
 * call left to fail. The process carries on, or, with `crash`, dies right
 * after the unit's failure or commit. */
static sweep sweep_one_store(fault_kind kind, bool persistent, bool crash, const char *options) {
  sweep s = {"", 0, 0, 0, 0, 0};
  snprintf(s.name, sizeof(s.name), "%s%s, %s%s", faults[kind].name,
           *options ? " (rollback journal)" : "", persistent ? "from then on" : "once",
           crash ? ", then the process dies" : "");
  for (long n = 1;; n++) {
    char what[160];
    snprintf(what, sizeof(what), "%s: call %ld", s.name, n);
    database db;
    fresh_database(&db, options);
    result r;
    if (crash) {
      run_unit_and_die(open_main, &db, enroll, NULL, kind, n, persistent, &r);
    } else {
      uow_env *env = open_main(&db);
      assert_non_null(env);
      shim_arm(kind, n, persistent);
      run_unit(env, enroll, NULL, false, &r);
      shim_pause();
      EOK(env, uow_run(env, add_tag, NULL, NULL)); /* a failed connection is not reused */
      shim_resume(); /* closing (the last checkpoint) has its calls failed too */
      uow_env_close(env);
      shim_pause();
      r.injected = shim.injected;
    }
    check_result(&r, kind, "main", what, crash);
    expect_integrity(db.path, what);
    bool whole = enrolled(&db, what);
    expect_outcome(&r, whole, what);
    if (!crash) {
      char url[1200];
      snprintf(url, sizeof(url), "sqlite:%s", db.path);
      assert_int_equal(test_count_at(url, "tags", "name = 'after-failure'"), 1);
    }
    remove_database(&db);
    if (!r.injected) {
      /* The run made fewer calls than n: every call has failed once. */
      if (r.rc != UOW_OK || !whole)
        fail_msg("%s: nothing failed, yet the unit did not commit: %s", what, r.msg);
      break;
    }
    tally(&s, &r, whole);
  }
  summarize(&s);
  return s;
}

/* Both modes of one kind: a transient fault, and a disk that stays away. */
static void sweep_both_modes(fault_kind kind, bool crash, const char *options) {
  sweep_one_store(kind, false, crash, options);
  sweep_one_store(kind, true, crash, options);
}

static void every_failed_read_during_a_unit_leaves_all_or_nothing(void **state) {
  (void)state;
  sweep_both_modes(FAULT_READ, false, "");
}

static void every_failed_write_during_a_unit_leaves_all_or_nothing(void **state) {
  (void)state;
  sweep_both_modes(FAULT_WRITE, false, "");
}

static void every_failed_sync_during_a_unit_leaves_all_or_nothing(void **state) {
  (void)state;
  sweep_both_modes(FAULT_SYNC, false, "");
}

static void every_failed_read_then_a_crash_leaves_all_or_nothing(void **state) {
  (void)state;
  sweep_both_modes(FAULT_READ, true, "");
}

static void every_failed_write_then_a_crash_leaves_all_or_nothing(void **state) {
  (void)state;
  sweep_both_modes(FAULT_WRITE, true, "");
}

/* The WAL's commit frame is written, then synced: when that sync fails,
 * SQLite rolls back in this process, but a crash before the log is written
 * over leaves the frame for recovery, which keeps the unit. So the commit
 * is in doubt, and the sweep must meet that case. */
static void failed_sync_at_commit_is_in_doubt_and_a_crash_may_keep_the_unit(void **state) {
  (void)state;
  for (int persistent = 0; persistent <= 1; persistent++) {
    sweep s = sweep_one_store(FAULT_SYNC, persistent, true, "");
    assert_true(s.kept_in_doubt > 0);
  }
}

static void every_failed_open_or_shared_memory_call_leaves_all_or_nothing(void **state) {
  (void)state;
  for (fault_kind kind = FAULT_OPEN; kind < FAULT_KINDS; kind++) {
    sweep_both_modes(kind, false, "");
    sweep_both_modes(kind, true, "");
  }
}

/* journal_mode=delete: the commit point is the journal's deletion; a failure
 * before it leaves a hot journal, which the next open plays back. */
static void every_failed_call_with_a_rollback_journal_leaves_all_or_nothing(void **state) {
  (void)state;
  for (fault_kind kind = FAULT_READ; kind <= FAULT_SYNC; kind++) {
    sweep_both_modes(kind, false, "?journal_mode=delete");
    sweep_both_modes(kind, true, "?journal_mode=delete");
  }
}

/* ---- reads failing inside uow_get ---- */

static void every_failed_read_in_get_is_a_clear_error_and_the_unit_ends_cleanly(void **state) {
  (void)state;
  database db;
  fresh_database(&db, "");
  for (int persistent = 0; persistent <= 1; persistent++) {
    const char *name = persistent ? "reads in uow_get, from then on" : "reads in uow_get, once";
    long points = 0;
    for (long n = 1;; n++) {
      uow_env *env = open_main(&db); /* a cold connection: the get reads the file */
      assert_non_null(env);
      uow_unit *unit;
      EOK(env, uow_begin(env, &unit));
      int64_t course_id = 1, member_id = MEMBER;
      course *c;
      user *member = NULL;
      UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
      shim_arm(FAULT_READ, n, persistent);
      int rc = uow_get(unit, &user_entity, &member_id, (void **)&member);
      if (!shim.injected) {
        shim_pause();
        UOK(unit, rc);
        assert_int_equal(member->id, MEMBER);
        uow_end(unit);
        uow_env_close(env);
        break;
      }
      points++;
      if (rc != UOW_EIO)
        fail_msg("%s: call %ld: uow_get returned %d (%s): %s", name, n, rc, uow_strerror(rc),
                 uow_errmsg(unit));
      assert_null(member);
      assert_contains(uow_errmsg(unit), "read failed: store 'main': disk I/O error");
      assert_contains(uow_errmsg(unit), "SQLITE_IOERR_READ");
      assert_contains(uow_errmsg(unit), "the unit must be rolled back");
      /* The failed unit refuses more work, even what it already holds, until rolled back. */
      UCODE(unit, UOW_EMISUSE, uow_get(unit, &course_entity, &course_id, (void **)&c));
      assert_contains(uow_errmsg(unit), "roll it back first");
      UOK(unit, uow_rollback(unit));
      uow_end(unit);
      shim_pause();
      /* The same environment serves the next unit, on a sound connection. */
      EOK(env, uow_begin(env, &unit));
      UOK(unit, uow_get(unit, &user_entity, &member_id, (void **)&member));
      assert_int_equal(member->id, MEMBER);
      uow_end(unit);
      uow_env_close(env);
      expect_integrity(db.path, name);
    }
    assert_true(points > 0); /* the get did read the file */
    print_message("%s: %ld failure points, each UOW_EIO with SQLite's detail\n", name, points);
  }
  remove_database(&db);
}

/* ---- SQLite deciding, a PostgreSQL participant ---- */

static uow_env *open_world(const void *world) { return ms_try_open(world, NULL, false); }

/* The unit under test: row 1 changes and row 2 is added in both stores, with an event. */
static int change_both(uow_unit *unit, void *arg) {
  const ms_world *w = arg;
  for (size_t i = 0; i < w->nstores; i++) {
    int64_t one = 1;
    ms_row *row;
    int rc = uow_get(unit, w->entities[i], &one, (void **)&row);
    if (!rc) {
      row->note = "changed";
      rc = uow_new(unit, w->entities[i], (void **)&row);
    }
    if (rc)
      return rc;
    row->id = 2;
    row->note = "unit 2";
  }
  return uow_emit(unit, "ms.changed", "2", "{}", 2);
}

/* Whether both stores hold the unit of change_both(): all of it in both, or none. */
static bool changed_in_both(const ms_world *w, const char *what) {
  static const char *const names[][2] = {{"row 1 changed in lite", "row 2 in lite"},
                                         {"row 1 changed in pg1", "row 2 in pg1"}};
  parts p = {.n = 0};
  for (size_t i = 0; i < w->nstores && i < 2; i++) {
    const char *table = w->entities[i]->table;
    part(&p, names[i][0], test_count_at(w->urls[i], table, "id = 1 AND note = 'changed'"), 1);
    part(&p, names[i][1], test_count_at(w->urls[i], table, "id = 2"), 1);
  }
  part(&p, "event", test_count_at(w->urls[0], "uow_outbox", "topic = 'ms.changed'"), 1);
  return whole_or_nothing(&p, what);
}

static sweep sweep_with_postgres(fault_kind kind, bool persistent, bool crash) {
  sweep s = {"", 0, 0, 0, 0, 0};
  snprintf(s.name, sizeof(s.name), "%s with a PostgreSQL participant, %s%s", faults[kind].name,
           persistent ? "from then on" : "once", crash ? ", then the process dies" : "");
  for (long n = 1;; n++) {
    char what[160];
    snprintf(what, sizeof(what), "%s: call %ld", s.name, n);
    ms_world w;
    ms_prepare(&w, MS_SQLITE_PG);
    uow_env *env = ms_open(&w, NULL);
    assert_int_equal(ms_unit(env, &w, 1), UOW_OK); /* row 1 in both stores */
    uow_env_close(env);
    result r;
    if (crash)
      run_unit_and_die(open_world, &w, change_both, &w, kind, n, persistent, &r);
    env = open_world(&w);
    assert_non_null(env);
    if (!crash) {
      shim_arm(kind, n, persistent);
      run_unit(env, change_both, &w, false, &r);
      shim_pause();
    }
    /* Whatever was left prepared is settled the way the decider went. */
    uow_recover_report report = UOW_RECOVER_REPORT_INIT;
    EOK(env, uow_recover(env, &report));
    if (!crash) {
      assert_int_equal(ms_unit(env, &w, 3), UOW_OK); /* the environment still works */
      shim_resume();
    }
    uow_env_close(env);
    shim_pause();
    if (!crash)
      r.injected = shim.injected;
    check_result(&r, kind, "lite", what, crash);
    expect_integrity(w.urls[0] + strlen("sqlite:"), what);
    bool whole = changed_in_both(&w, what);
    expect_outcome(&r, whole, what);
    assert_int_equal(ms_prepared(&w), 0);
    ms_counts counts;
    ms_verify(&w, NULL, 3, &counts);
    assert_int_equal(counts.torn, 0);
    assert_int_equal(counts.complete, crash ? 1 + whole : 2 + whole);
    ms_cleanup(&w);
    if (!r.injected) {
      if (r.rc != UOW_OK || !whole)
        fail_msg("%s: nothing failed, yet the unit did not commit: %s", what, r.msg);
      break;
    }
    tally(&s, &r, whole);
  }
  summarize(&s);
  return s;
}

/* Both modes of one kind, the process carrying on or dying; returns how
 * often a unit in doubt was kept. */
static long sweep_with_postgres_every_way(fault_kind kind) {
  long kept_in_doubt = 0;
  for (int crash = 0; crash <= 1; crash++)
    for (int persistent = 0; persistent <= 1; persistent++)
      kept_in_doubt += sweep_with_postgres(kind, persistent, crash).kept_in_doubt;
  return kept_in_doubt;
}

static void every_failed_read_with_a_postgres_participant_leaves_both_or_neither(void **state) {
  (void)state;
  sweep_with_postgres_every_way(FAULT_READ);
}

static void every_failed_write_with_a_postgres_participant_leaves_both_or_neither(void **state) {
  (void)state;
  sweep_with_postgres_every_way(FAULT_WRITE);
}

/* The decision's COMMIT failing at its sync is in doubt: the participant
 * stays prepared, and uow_recover() commits it when a crash left the
 * decision to WAL recovery, or fences and rolls it back when it did not.
 * Rolling it back at once would tear the unit in the first case. */
static void every_failed_sync_with_a_postgres_participant_leaves_both_or_neither(void **state) {
  (void)state;
  assert_true(sweep_with_postgres_every_way(FAULT_SYNC) > 0);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_failed_read_during_a_unit_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_write_during_a_unit_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_sync_during_a_unit_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_read_then_a_crash_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_write_then_a_crash_leaves_all_or_nothing),
      cmocka_unit_test(failed_sync_at_commit_is_in_doubt_and_a_crash_may_keep_the_unit),
      cmocka_unit_test(every_failed_open_or_shared_memory_call_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_call_with_a_rollback_journal_leaves_all_or_nothing),
      cmocka_unit_test(every_failed_read_in_get_is_a_clear_error_and_the_unit_ends_cleanly),
      cmocka_unit_test(every_failed_read_with_a_postgres_participant_leaves_both_or_neither),
      cmocka_unit_test(every_failed_write_with_a_postgres_participant_leaves_both_or_neither),
      cmocka_unit_test(every_failed_sync_with_a_postgres_participant_leaves_both_or_neither),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("iofault", tests, shim_register, shim_unregister);
}
