/*
 * w_sqlite.c - the SQLite reference: workloads W1-W3 written by hand against
 * libsqlite3, the fastest plain way: one connection without mutexes (as
 * libuow opens them), statements prepared once and reused
 * (bind, step, reset), one explicit transaction per unit, the same pragmas,
 * tables and statements as libuow (bench.h): W1 inserts 100 rows per
 * INSERT, as libuow does.
 *
 *   bench_sqlite W1|W2|W3 sqlite PATH
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *const IMPL = "sqlite-c";

typedef struct bench_db {
  sqlite3 *db;
  const char *workload;
  char why[1024];
} bench_db;

/* Remember the first failure; the caller stops and prints it. */
static int failed(bench_db *b, int rc, const char *what) {
  if (!b->why[0])
    snprintf(b->why, sizeof(b->why), "%s: %s (%d)", what, sqlite3_errmsg(b->db), rc);
  return rc ? rc : SQLITE_ERROR;
}

static int exec(bench_db *b, const char *sql) {
  int rc = sqlite3_exec(b->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : failed(b, rc, sql);
}

static int prepare(bench_db *b, const char *sql, sqlite3_stmt **stmt) {
  int rc = sqlite3_prepare_v3(b->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
  return rc == SQLITE_OK ? 0 : failed(b, rc, sql);
}

/* Run a statement whose parameters are bound, expecting no rows, and reset it. */
static int run(bench_db *b, sqlite3_stmt *stmt) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : failed(b, rc, sqlite3_sql(stmt));
}

static int open_db(bench_db *b, const char *path) {
  int rc = sqlite3_open_v2(path, &b->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    return failed(b, rc, "open");
  if ((rc = exec(b, "PRAGMA journal_mode=wal")) || (rc = exec(b, "PRAGMA synchronous=full")) ||
      (rc = exec(b, "PRAGMA foreign_keys=ON")))
    return rc;
  for (const char *const *ddl = bench_schema(BENCH_SQLITE, b->workload); *ddl; ddl++)
    if ((rc = exec(b, *ddl)))
      return rc;
  return 0;
}

/* ---- W1 ---- */

/* Rows per multi-row INSERT, as libuow sends them. */
#define INSERT_ROWS 100

/* Users 1..n in INSERTs of INSERT_ROWS rows (one shorter INSERT for the
 * rest), the statements libuow sends; each prepared once. */
static int insert_users(bench_db *b, int64_t n) {
  static char sql[32768];
  static char email[INSERT_ROWS][64], name[INSERT_ROWS][64];
  sqlite3_stmt *full = NULL, *rest = NULL;
  int64_t tail = n % INSERT_ROWS;
  int rc = prepare(b, bench_sql_insert_users(sql, sizeof(sql), BENCH_SQLITE, INSERT_ROWS), &full);
  if (!rc && tail)
    rc = prepare(b, bench_sql_insert_users(sql, sizeof(sql), BENCH_SQLITE, tail), &rest);
  if (!rc)
    rc = exec(b, "BEGIN");
  for (int64_t first = 1; first <= n && !rc; first += INSERT_ROWS) {
    int64_t rows = n - first + 1 < INSERT_ROWS ? n - first + 1 : INSERT_ROWS;
    sqlite3_stmt *insert = rows == INSERT_ROWS ? full : rest;
    for (int64_t r = 0; r < rows; r++) {
      int64_t i = first + r;
      int at = (int)r * 5;
      bench_user_email(email[r], sizeof(email[r]), i);
      bench_user_name(name[r], sizeof(name[r]), i);
      sqlite3_bind_int64(insert, at + 1, i);
      sqlite3_bind_text(insert, at + 2, email[r], -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, at + 3, name[r], -1, SQLITE_STATIC);
      sqlite3_bind_double(insert, at + 4, bench_user_score(i));
      sqlite3_bind_int64(insert, at + 5, 1);
    }
    rc = run(b, insert);
  }
  if (!rc)
    rc = exec(b, "COMMIT");
  sqlite3_finalize(full);
  sqlite3_finalize(rest);
  return rc;
}

static int w1(bench_db *b) {
  bench_sizes sizes = bench_sizes_get();
  double t0 = bench_now();
  int rc = insert_users(b, sizes.w1_rows);
  double t1 = bench_now();
  if (!rc)
    bench_report(IMPL, "W1", "sqlite", sizes.w1_rows, t0, t1);
  return rc;
}

/* ---- W2 ---- */

enum {
  SELECT_COURSE,
  SELECT_ENROLLED,
  UPDATE_COURSE,
  INSERT_ENROLLMENT,
  INSERT_AUDIT,
  INSERT_OUTBOX,
  BEGIN_IMMEDIATE,
  COMMIT,
  ROLLBACK,
  W2_STATEMENTS
};

static int create_courses(bench_db *b, const bench_sizes *sizes) {
  sqlite3_stmt *insert = NULL;
  char title[64];
  int rc = exec(b, bench_sql_enrollment_index);
  if (!rc)
    rc = prepare(b, bench_sql_insert_course[BENCH_SQLITE], &insert);
  if (!rc)
    rc = exec(b, "BEGIN");
  for (int64_t c = 1; c <= sizes->w2_courses && !rc; c++) {
    bench_course_title(title, sizeof(title), c);
    sqlite3_bind_int64(insert, 1, c);
    sqlite3_bind_text(insert, 2, title, -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert, 3, sizes->w2_seats);
    sqlite3_bind_int64(insert, 4, 1);
    rc = run(b, insert);
  }
  if (!rc)
    rc = exec(b, "COMMIT");
  sqlite3_finalize(insert);
  return rc;
}

/* One enrollment: lock, check, take the seat, record it, emit the event. */
static int enroll(bench_db *b, sqlite3_stmt **s, int64_t course_id, const char *learner,
                  const char *unit_id) {
  int rc = run(b, s[BEGIN_IMMEDIATE]);
  if (rc)
    return rc;
  sqlite3_stmt *q = s[SELECT_COURSE];
  sqlite3_bind_int64(q, 1, course_id);
  if ((rc = sqlite3_step(q)) != SQLITE_ROW) {
    sqlite3_reset(q);
    failed(b, rc, "no such course");
    goto rollback;
  }
  char title[128];
  snprintf(title, sizeof(title), "%s", (const char *)sqlite3_column_text(q, 1));
  int64_t seats_left = sqlite3_column_int64(q, 2);
  int64_t version = sqlite3_column_int64(q, 3);
  sqlite3_reset(q);

  q = s[SELECT_ENROLLED];
  sqlite3_bind_int64(q, 1, course_id);
  sqlite3_bind_text(q, 2, learner, -1, SQLITE_STATIC);
  int step = sqlite3_step(q);
  sqlite3_reset(q);
  if (step != SQLITE_DONE || seats_left == 0) {
    rc = failed(b, step, step == SQLITE_ROW ? "already enrolled" : "full, or the check failed");
    goto rollback;
  }

  int64_t now = bench_epoch_ms();
  char text[256];
  q = s[INSERT_ENROLLMENT];
  sqlite3_bind_int64(q, 1, course_id);
  sqlite3_bind_text(q, 2, learner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, now);
  if ((rc = run(b, q)))
    goto rollback;
  q = s[INSERT_AUDIT];
  bench_audit_detail(text, sizeof(text), learner, title);
  sqlite3_bind_text(q, 1, BENCH_AUDIT_ACTION, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, text, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, now);
  if ((rc = run(b, q)))
    goto rollback;
  q = s[UPDATE_COURSE];
  sqlite3_bind_int64(q, 1, seats_left - 1);
  sqlite3_bind_int64(q, 2, version + 1);
  sqlite3_bind_int64(q, 3, course_id);
  sqlite3_bind_int64(q, 4, version);
  if ((rc = run(b, q)))
    goto rollback;
  if (sqlite3_changes(b->db) != 1) {
    rc = failed(b, SQLITE_ERROR, "course changed by another unit");
    goto rollback;
  }
  q = s[INSERT_OUTBOX];
  int len = bench_event_payload(text, sizeof(text), course_id, learner);
  sqlite3_bind_text(q, 1, unit_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, 1);
  sqlite3_bind_text(q, 3, "event", -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, BENCH_EVENT_TOPIC, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 5, learner, -1, SQLITE_STATIC);
  sqlite3_bind_blob(q, 6, text, len, SQLITE_STATIC);
  sqlite3_bind_int64(q, 7, now);
  sqlite3_bind_int64(q, 8, 0);
  sqlite3_bind_int64(q, 9, 0);
  sqlite3_bind_int64(q, 10, now);
  sqlite3_bind_null(q, 11);
  sqlite3_bind_null(q, 12);
  if ((rc = run(b, q)))
    goto rollback;
  return run(b, s[COMMIT]);
rollback:
  sqlite3_step(s[ROLLBACK]);
  sqlite3_reset(s[ROLLBACK]);
  return rc;
}

static int w2(bench_db *b) {
  bench_sizes sizes = bench_sizes_get();
  static const char *const text[W2_STATEMENTS] = {
      [BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE", [COMMIT] = "COMMIT", [ROLLBACK] = "ROLLBACK"};
  sqlite3_stmt *s[W2_STATEMENTS] = {0};
  const char *sql[W2_STATEMENTS];
  memcpy(sql, text, sizeof(sql));
  sql[SELECT_COURSE] = bench_sql_select_course[BENCH_SQLITE];
  sql[SELECT_ENROLLED] = bench_sql_select_enrolled[BENCH_SQLITE];
  sql[UPDATE_COURSE] = bench_sql_update_course[BENCH_SQLITE];
  sql[INSERT_ENROLLMENT] = bench_sql_insert_enrollment[BENCH_SQLITE];
  sql[INSERT_AUDIT] = bench_sql_insert_audit[BENCH_SQLITE];
  sql[INSERT_OUTBOX] = bench_sql_insert_outbox[BENCH_SQLITE];

  int rc = create_courses(b, &sizes);
  for (int i = 0; i < W2_STATEMENTS && !rc; i++)
    rc = prepare(b, sql[i], &s[i]);
  if (!rc) {
    uint64_t nonce = bench_nonce();
    char learner[64], unit_id[64];
    double t0 = bench_now();
    for (int64_t k = 0; k < sizes.w2_units && !rc; k++) {
      bench_learner(learner, sizeof(learner), k);
      bench_unit_id(unit_id, sizeof(unit_id), nonce, (uint64_t)k + 1);
      rc = enroll(b, s, bench_course_of(k, sizes.w2_courses), learner, unit_id);
    }
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W2", "sqlite", sizes.w2_units, t0, t1);
  }
  for (int i = 0; i < W2_STATEMENTS; i++)
    sqlite3_finalize(s[i]);
  return rc;
}

/* ---- W3 ---- */

typedef struct user {
  int64_t id;
  char *email;
  char *name;
  double score;
  int64_t version;
} user;

static char *copy_text(sqlite3_stmt *q, int col) {
  const char *s = (const char *)sqlite3_column_text(q, col);
  size_t n = (size_t)sqlite3_column_bytes(q, col);
  char *copy = malloc(n + 1);
  if (copy) {
    memcpy(copy, s, n);
    copy[n] = '\0';
  }
  return copy;
}

static int load_modify(bench_db *b, int64_t expected) {
  sqlite3_stmt *select = NULL, *update = NULL;
  user *users = calloc((size_t)expected, sizeof(*users));
  int64_t n = 0;
  int rc = users ? 0 : failed(b, SQLITE_NOMEM, "out of memory");
  if (!rc)
    rc = prepare(b, bench_sql_select_users[BENCH_SQLITE], &select);
  if (!rc)
    rc = prepare(b, bench_sql_update_user_score[BENCH_SQLITE], &update);
  if (!rc)
    rc = exec(b, "BEGIN");
  int step = SQLITE_DONE;
  while (!rc && (step = sqlite3_step(select)) == SQLITE_ROW && n < expected) {
    user *u = &users[n++];
    u->id = sqlite3_column_int64(select, 0);
    u->email = copy_text(select, 1);
    u->name = copy_text(select, 2);
    u->score = sqlite3_column_double(select, 3);
    u->version = sqlite3_column_int64(select, 4);
    if (!u->email || !u->name)
      rc = failed(b, SQLITE_NOMEM, "out of memory");
  }
  if (!rc && (step != SQLITE_DONE || n != expected))
    rc = failed(b, step, "load");
  for (int64_t i = 0; i < n && !rc; i++) {
    user *u = &users[i];
    if (u->id % BENCH_W3_EVERY != 0)
      continue;
    u->score += BENCH_W3_DELTA;
    sqlite3_bind_double(update, 1, u->score);
    sqlite3_bind_int64(update, 2, u->version + 1);
    sqlite3_bind_int64(update, 3, u->id);
    sqlite3_bind_int64(update, 4, u->version);
    if (!(rc = run(b, update)) && sqlite3_changes(b->db) != 1)
      rc = failed(b, SQLITE_ERROR, "user changed by another unit");
    u->version++;
  }
  if (!rc)
    rc = exec(b, "COMMIT");
  else
    sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
  for (int64_t i = 0; i < n; i++) {
    free(users[i].email);
    free(users[i].name);
  }
  free(users);
  sqlite3_finalize(select);
  sqlite3_finalize(update);
  return rc;
}

static int w3(bench_db *b) {
  bench_sizes sizes = bench_sizes_get();
  int rc = insert_users(b, sizes.w3_users);
  if (!rc) {
    double t0 = bench_now();
    rc = load_modify(b, sizes.w3_users);
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W3", "sqlite", sizes.w3_users, t0, t1);
  }
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[2], "sqlite") != 0) {
    fprintf(stderr, "usage: bench_sqlite W1|W2|W3 sqlite PATH\n");
    return 2;
  }
  bench_db b = {.workload = argv[1]};
  int (*workload)(bench_db *) = strcmp(argv[1], "W1") == 0   ? w1
                                : strcmp(argv[1], "W2") == 0 ? w2
                                : strcmp(argv[1], "W3") == 0 ? w3
                                                             : NULL;
  if (!workload) {
    fprintf(stderr, "bench_sqlite: unknown workload %s\n", argv[1]);
    return 2;
  }
  int rc = open_db(&b, argv[3]);
  if (!rc)
    rc = workload(&b);
  if (rc)
    bench_na(IMPL, argv[1], "sqlite", "%s", b.why);
  sqlite3_close(b.db);
  return 0;
}
