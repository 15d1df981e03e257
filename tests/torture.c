/*
 * torture.c - the failing allocator and the driver of the allocation-failure
 * torture (see torture.h), and direct SQL on a store for the checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"
#include "torture.h"

/* A scenario that still allocates after this many points has run away. */
#define MAX_POINTS 100000
/* Problems of each kind described on stderr; the rest are only counted. */
#define SHOWN 5

/* ---- the allocator ---- */

static long allocations; /* made so far in the armed run */
static long fail_at;     /* the allocation that fails (1-based) */
static bool armed;       /* a run is in progress: count and fail */
static bool failed;      /* the armed run met its failure */
static long outstanding; /* live blocks since torture_run began */
static bool persistent;  /* every allocation from the fail_at-th on fails */

static bool should_fail(void) {
  if (!armed)
    return false;
  ++allocations;
  if (allocations < fail_at || (allocations > fail_at && !persistent))
    return false;
  failed = true;
  return true;
}

static void *counting_malloc(size_t size) {
  if (should_fail())
    return NULL;
  void *p = malloc(size);
  if (p)
    outstanding++;
  return p;
}

static void *counting_realloc(void *ptr, size_t size) {
  if (should_fail())
    return NULL; /* the block stays live, as realloc() leaves it */
  void *p = realloc(ptr, size);
  if (p && !ptr)
    outstanding++;
  return p;
}

static void counting_free(void *ptr) {
  if (ptr)
    outstanding--;
  free(ptr);
}

/* ---- the driver ---- */

static double ms_between(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

enum { CODES = 9 }; /* 0 and UOW_ENOTFOUND .. UOW_EINDOUBT */

static const char *code_name(int rc) {
  static const char *const names[CODES] = {"completed",   "ENOTFOUND", "ECONFLICT",
                                           "ECONSTRAINT", "EMISUSE",   "EINVAL",
                                           "ENOMEM",      "EIO",       "EINDOUBT"};
  return rc <= 0 && rc > -CODES ? names[-rc] : "other";
}

/* What the runs of a scenario came to. */
typedef struct report {
  long points; /* runs in which an allocation failed */
  long torn;   /* runs whose check failed */
  long leaked; /* runs that left blocks allocated */
  long wrong;  /* runs that returned a code the scenario does not accept */
} report;

void torture_run(const torture_scenario *s) {
  report r;
  memset(&r, 0, sizeof(r));
  long codes[CODES + 1] = {0}; /* per code of the runs that met their failure; last: other */
  long stride = s->stride > 1 ? s->stride : 1;
  bool verbose = getenv("TORTURE_VERBOSE") != NULL; /* one line per run on stderr */
  persistent = getenv("TORTURE_PERSISTENT") != NULL;
  struct timespec start, t0, t1, t2, t3;
  clock_gettime(CLOCK_MONOTONIC, &start);
  outstanding = 0;
  armed = false;
  assert_int_equal(uow_set_allocator(counting_malloc, counting_realloc, counting_free), UOW_OK);
  if (s->setup)
    s->setup(s->ctx);
  for (long point = 1;; point += stride) {
    if (point > MAX_POINTS)
      fail_msg("%s: still allocating after %d failure points", s->name, MAX_POINTS);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (s->prepare)
      s->prepare(s->ctx, point);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char msg[TORTURE_MSG] = "";
    long before = outstanding;
    allocations = 0;
    fail_at = point;
    failed = false;
    armed = true;
    int rc = s->run(s->ctx, msg, sizeof(msg));
    armed = false;
    clock_gettime(CLOCK_MONOTONIC, &t2);
    long leaked = outstanding - before;
    if (leaked && r.leaked++ < SHOWN)
      fprintf(stderr, "%s: allocation %ld failing leaks %ld blocks (%s: %s)\n", s->name, point,
              leaked, code_name(rc), msg);
    bool accepted = rc == UOW_OK || rc == UOW_ENOMEM || (s->accepts && s->accepts(s->ctx, rc));
    if (!failed && rc != UOW_OK)
      accepted = false; /* nothing failed: the operation must go through */
    if (rc != UOW_OK && (!msg[0] || strstr(msg, TORTURE_NO_MESSAGE)))
      accepted = false; /* every failure says what it was */
    if (rc == UOW_ENOMEM && !strstr(msg, "memory"))
      accepted = false; /* ... and not an earlier failure's message */
    if (!accepted && r.wrong++ < SHOWN)
      fprintf(stderr, "%s: allocation %ld failing%s gives %d (%s): \"%s\"\n", s->name, point,
              failed ? "" : " (not reached)", rc, code_name(rc), msg);
    if (!s->check(s->ctx, rc, point) && r.torn++ < SHOWN)
      fprintf(stderr, "%s: allocation %ld failing (%s: %s) leaves the stores wrong (see above)\n",
              s->name, point, code_name(rc), msg);
    clock_gettime(CLOCK_MONOTONIC, &t3);
    if (verbose)
      fprintf(stderr,
              "%s: allocation %ld failing%s: %s: %s (prepare %.0f, run %.0f, check %.0f ms)\n",
              s->name, point, failed ? "" : " (not reached)", code_name(rc), msg,
              ms_between(&t0, &t1), ms_between(&t1, &t2), ms_between(&t2, &t3));
    if (!failed)
      break; /* the run made fewer allocations than `point`: every one was failed */
    r.points++;
    codes[rc <= 0 && rc > -CODES ? -rc : CODES]++;
  }
  if (s->teardown)
    s->teardown(s->ctx);
  torture_disconnect();
  long left = outstanding;
  assert_int_equal(uow_set_allocator(NULL, NULL, NULL), UOW_OK);
  char spread[256] = "";
  size_t len = 0;
  for (int i = CODES; i >= 0; i--) /* ENOMEM first, completed runs last */
    if (codes[i] && len < sizeof(spread))
      len += (size_t)snprintf(spread + len, sizeof(spread) - len, "%s%s %ld", len ? ", " : "",
                              code_name(i == CODES ? 1 : -i), codes[i]);
  clock_gettime(CLOCK_MONOTONIC, &t3);
  printf("%s: %ld failure points, %ld torn, %ld leaked, %ld wrong codes (%s) in %.1f s\n", s->name,
         r.points, r.torn, r.leaked, r.wrong, spread, ms_between(&start, &t3) / 1e3);
  fflush(stdout);
  if (left)
    fail_msg("%s: %ld blocks still allocated after the scenario ended", s->name, left);
  if (r.torn || r.leaked || r.wrong)
    fail_msg("%s: %ld torn, %ld leaked, %ld wrong codes (details above)", s->name, r.torn, r.leaked,
             r.wrong);
}

/* ---- direct SQL ---- */

static bool is_sqlite(const char *url) { return strncmp(url, "sqlite:", 7) == 0; }

/* PostgreSQL connections of the checks, kept while a scenario runs: each new
 * one costs the server a process, and checks run after every run. */
enum { CACHED_MAX = 4 };
static struct {
  char url[2048];
  PGconn *conn;
} cached[CACHED_MAX];

static void pg_forget(PGconn *conn) {
  for (size_t i = 0; i < CACHED_MAX; i++)
    if (cached[i].conn == conn)
      cached[i].conn = NULL;
  PQfinish(conn);
}

static PGconn *pg_open(const char *url) {
  size_t slot = 0;
  for (size_t i = 0; i < CACHED_MAX; i++) {
    if (cached[i].conn && strcmp(cached[i].url, url) == 0) {
      if (PQstatus(cached[i].conn) == CONNECTION_OK)
        return cached[i].conn;
      pg_forget(cached[i].conn);
    }
    if (!cached[i].conn)
      slot = i;
  }
  PGconn *conn = PQconnectdb(url);
  if (PQstatus(conn) != CONNECTION_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    PQfinish(conn);
    fail_msg("torture: cannot connect: %s", msg);
  }
  PQsetNoticeProcessor(conn, NULL, NULL);
  if (cached[slot].conn)
    pg_forget(cached[slot].conn);
  snprintf(cached[slot].url, sizeof(cached[slot].url), "%s", url);
  cached[slot].conn = conn;
  return conn;
}

void torture_disconnect(void) {
  for (size_t i = 0; i < CACHED_MAX; i++)
    if (cached[i].conn)
      pg_forget(cached[i].conn);
}

void torture_exec(const char *url, const char *sql) {
  if (is_sqlite(url)) {
    test_sqlite_exec(url, sql);
    return;
  }
  PGconn *conn = pg_open(url);
  PGresult *res = PQexec(conn, sql);
  ExecStatusType status = PQresultStatus(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
    PQclear(res);
    pg_forget(conn);
    fail_msg("torture: %s: %s", sql, msg);
  }
  PQclear(res);
}

bool torture_text(const char *url, const char *sql, char *buf, size_t cap) {
  bool found = false;
  buf[0] = '\0';
  if (is_sqlite(url)) {
    sqlite3 *db = test_sqlite_open(url);
    sqlite3_stmt *stmt = NULL;
    int src = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (src == SQLITE_OK)
      src = sqlite3_step(stmt);
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
      char msg[512];
      snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db));
      sqlite3_finalize(stmt);
      sqlite3_close(db);
      fail_msg("torture: %s: %s", sql, msg);
    }
    if (src == SQLITE_ROW) {
      const unsigned char *text = sqlite3_column_text(stmt, 0);
      snprintf(buf, cap, "%s", text ? (const char *)text : "");
      found = true;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return found;
  }
  PGconn *conn = pg_open(url);
  PGresult *res = PQexec(conn, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
    PQclear(res);
    pg_forget(conn);
    fail_msg("torture: %s: %s", sql, msg);
  }
  if (PQntuples(res) > 0) {
    snprintf(buf, cap, "%s", PQgetvalue(res, 0, 0));
    found = true;
  }
  PQclear(res);
  return found;
}

long long torture_int(const char *url, const char *sql) {
  char buf[64];
  if (!torture_text(url, sql, buf, sizeof(buf)) || !buf[0])
    fail_msg("torture: %s: no row, or NULL", sql);
  char *end = NULL;
  long long n = strtoll(buf, &end, 10);
  if (*end)
    fail_msg("torture: %s: '%s' is not an integer", sql, buf);
  return n;
}

/* ---- writing a run ---- */

/* The entities of support.h, in the order they must be mapped. */
static const uow_entity *const entities[] = {&user_entity,       &profile_entity, &course_entity,
                                             &enrollment_entity, &tag_entity,     &note_entity};

int torture_open_env(const char *url, bool schema, uow_env **env, char *msg, size_t cap) {
  uow_env_options opts = UOW_ENV_OPTIONS_INIT;
  opts.pool_size = 2;
  opts.outbox_store = "main";
  int rc = uow_env_open(&opts, env);
  if (rc) {
    snprintf(msg, cap, "uow_env_open: %s", uow_strerror(rc));
    return rc;
  }
  rc = uow_env_add_store(*env, "main", url);
  for (size_t i = 0; !rc && i < sizeof(entities) / sizeof(entities[0]); i++)
    rc = uow_env_map(*env, entities[i], "main");
  if (!rc && schema && !(rc = uow_env_create_schema(*env)))
    rc = uow_env_map(*env, &outbox_event_entity, "main");
  if (rc)
    TORTURE_SAY("opening", uow_env_errmsg(*env));
  return rc;
}

void torture_env_exec(uow_env *env, const char *sql, ...) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  va_list ap;
  va_start(ap, sql);
  for (const char *s = sql; s; s = va_arg(ap, const char *))
    UOK(unit, uow_exec(unit, "main", s, NULL, 0));
  va_end(ap);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* ---- checking ---- */

void torture_read_facts(const char *url, const torture_fact *facts, size_t n, bool *all, bool *none,
                        char *why, size_t cap) {
  assert_true(n <= TORTURE_FACTS_MAX);
  char sql[8192];
  size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT ''");
  for (size_t i = 0; i < n && len < sizeof(sql); i++)
    len += (size_t)snprintf(sql + len, sizeof(sql) - len,
                            " || (SELECT count(*) FROM %s WHERE %s) || ',' || "
                            "(SELECT count(*) FROM %s WHERE %s) || ','",
                            facts[i].table, facts[i].all, facts[i].table,
                            facts[i].none ? facts[i].none : facts[i].all);
  assert_true(len < sizeof(sql));
  char buf[1024];
  if (!torture_text(url, sql, buf, sizeof(buf)))
    fail_msg("no row from %s", sql);
  long counts[2 * TORTURE_FACTS_MAX];
  size_t got = 0;
  for (char *p = buf; *p && got < 2 * n; got++) {
    counts[got] = strtol(p, &p, 10);
    if (*p == ',')
      p++;
  }
  assert_int_equal(got, 2 * n);
  *all = *none = true;
  why[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    bool is_all = counts[2 * i] == facts[i].n_all;
    bool is_none = facts[i].none ? counts[2 * i + 1] == 1 : counts[2 * i + 1] == 0;
    *all = *all && is_all;
    *none = *none && is_none;
    size_t used = strlen(why);
    snprintf(why + used, cap - used, "%s%s %s", used ? "; " : "", facts[i].table,
             is_all    ? "committed"
             : is_none ? "untouched"
                       : "neither");
  }
}

bool torture_unit_consistent(const char *what, int rc, bool all, bool none, const char *why) {
  bool ok = rc == UOW_OK         ? all
            : rc == UOW_EINDOUBT ? all || none
                                 : none; /* not reached, or failed: nothing written */
  if (!ok)
    fprintf(stderr, "%s (commit %d): %s\n", what, rc, why);
  return ok;
}
