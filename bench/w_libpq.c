/*
 * w_libpq.c - the PostgreSQL references: workloads W1-W3 written by hand
 * against libpq, with statements prepared once, parameters and results in
 * binary, and the same tables and statements as libuow (bench.h). Two ways:
 *
 *   plain     one statement, one round trip (PQexecPrepared), the way most
 *             libpq code is written; W1 inserts one row per statement.
 *   pipeline  pipeline mode, as few round trips as the work allows: W1 sends
 *             every multi-row INSERT (100 rows each) and the COMMIT at once;
 *             W2 sends its two reads together, then its four writes with the
 *             COMMIT; W3 reads, sends every UPDATE at once, checks each one
 *             matched its row, then commits.
 *
 *   bench_libpq W1|W2|W3 pg URL plain|pipeline
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Type OIDs (catalog/pg_type_d.h is a server header). */
#define INT8OID 20
#define TEXTOID 25
#define BYTEAOID 17
#define FLOAT8OID 701

/* Rows per multi-row INSERT, as libuow sends them. */
#define INSERT_ROWS 100
#define MAX_PARAMS (INSERT_ROWS * 5)

typedef struct bench_pg {
  PGconn *pg;
  bool pipeline;
  const char *impl;
  char why[1024];
} bench_pg;

static int failed(bench_pg *b, const char *what, const PGresult *res) {
  if (!b->why[0])
    snprintf(b->why, sizeof(b->why), "%s: %s", what,
             res ? PQresultErrorMessage(res) : PQerrorMessage(b->pg));
  return -1;
}

/* ---- parameters, in binary (network byte order) ---- */

static uint64_t to_network(uint64_t v) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)(v >> (56 - 8 * i));
  uint64_t out;
  memcpy(&out, bytes, sizeof(out));
  return out;
}

static uint64_t from_network(const char *data) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | (unsigned char)data[i];
  return v;
}

typedef struct params {
  int n;
  const char *values[MAX_PARAMS];
  int lengths[MAX_PARAMS];
  int formats[MAX_PARAMS];
  uint64_t words[MAX_PARAMS]; /* big-endian numbers the values point to */
} params;

static void p_int8(params *p, int64_t v) {
  p->words[p->n] = to_network((uint64_t)v);
  p->values[p->n] = (const char *)&p->words[p->n];
  p->lengths[p->n] = 8;
  p->formats[p->n++] = 1;
}

static void p_float8(params *p, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof(bits));
  p_int8(p, (int64_t)bits);
}

static void p_bytes(params *p, const void *data, size_t len) {
  p->values[p->n] = data;
  p->lengths[p->n] = (int)len;
  p->formats[p->n++] = 1;
}

static void p_text(params *p, const char *s) { p_bytes(p, s, strlen(s)); }

static void p_null(params *p) {
  p->values[p->n] = NULL;
  p->lengths[p->n] = 0;
  p->formats[p->n++] = 1;
}

/* ---- results, in binary ---- */

static int64_t r_int8(const PGresult *res, int row, int col) {
  return (int64_t)from_network(PQgetvalue(res, row, col));
}

static double r_float8(const PGresult *res, int row, int col) {
  uint64_t v = (uint64_t)r_int8(res, row, col);
  double d;
  memcpy(&d, &v, sizeof(d));
  return d;
}

static char *r_text(const PGresult *res, int row, int col) {
  size_t n = (size_t)PQgetlength(res, row, col);
  char *copy = malloc(n + 1);
  if (copy) {
    memcpy(copy, PQgetvalue(res, row, col), n);
    copy[n] = '\0';
  }
  return copy;
}

/* ---- statements ---- */

static int prepare(bench_pg *b, const char *name, const char *sql, int n, const Oid *types) {
  PGresult *res = PQprepare(b->pg, name, sql, n, types);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : failed(b, sql, res);
  PQclear(res);
  return rc;
}

static int command(bench_pg *b, const char *sql) {
  PGresult *res = PQexec(b->pg, sql);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : failed(b, sql, res);
  PQclear(res);
  return rc;
}

/* Plain: run a prepared statement now. The caller clears the result. */
static PGresult *exec_prepared(bench_pg *b, const char *name, const params *p) {
  return PQexecPrepared(b->pg, name, p->n, p->values, p->lengths, p->formats, 1);
}

/* Pipeline: queue a prepared statement. */
static int send_prepared(bench_pg *b, const char *name, const params *p) {
  if (PQsendQueryPrepared(b->pg, name, p->n, p->values, p->lengths, p->formats, 1))
    return 0;
  return failed(b, name, NULL);
}

static int send_command(bench_pg *b, const char *sql) {
  if (PQsendQueryParams(b->pg, sql, 0, NULL, NULL, NULL, NULL, 0))
    return 0;
  return failed(b, sql, NULL);
}

/* Pipeline: the next statement's result (its trailing NULL consumed). The caller clears it. */
static PGresult *next_result(bench_pg *b) {
  PGresult *res = PQgetResult(b->pg);
  PGresult *end = PQgetResult(b->pg);
  if (end) { /* a statement has one result then NULL; anything else is a bug here */
    failed(b, "pipeline: unexpected extra result", end);
    PQclear(end);
  }
  return res;
}

/* Pipeline: the Sync's answer closes the round trip. */
static int read_sync(bench_pg *b) {
  PGresult *res = PQgetResult(b->pg);
  int rc = PQresultStatus(res) == PGRES_PIPELINE_SYNC ? 0 : failed(b, "pipeline sync", res);
  PQclear(res);
  return rc;
}

static bool ok(const PGresult *res) {
  ExecStatusType st = PQresultStatus(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Read `n` results of a pipeline and its sync; true when all succeeded. */
static int drain(bench_pg *b, int n, const char *what) {
  int rc = 0;
  for (int i = 0; i < n; i++) {
    PGresult *res = next_result(b);
    if (!ok(res) && !rc)
      rc = failed(b, what, res);
    PQclear(res);
  }
  return read_sync(b) || rc ? -1 : 0;
}

static int open_db(bench_pg *b, const char *url, const char *workload) {
  b->pg = PQconnectdb(url);
  if (PQstatus(b->pg) != CONNECTION_OK)
    return failed(b, "connect", NULL);
  for (const char *const *ddl = bench_schema(BENCH_PG, workload); *ddl; ddl++)
    if (command(b, *ddl))
      return -1;
  return 0;
}

/* ---- W1 ---- */

static const Oid user_types[5] = {INT8OID, TEXTOID, TEXTOID, FLOAT8OID, INT8OID};

typedef struct user_text {
  char email[64];
  char name[64];
} user_text;

static void user_params(params *p, user_text *t, int64_t i) {
  bench_user_email(t->email, sizeof(t->email), i);
  bench_user_name(t->name, sizeof(t->name), i);
  p_int8(p, i);
  p_text(p, t->email);
  p_text(p, t->name);
  p_float8(p, bench_user_score(i));
  p_int8(p, 1);
}

static int insert_users_plain(bench_pg *b, int64_t n) {
  static params p;
  user_text t;
  int rc = prepare(b, "insert_user", bench_sql_insert_user[BENCH_PG], 5, user_types);
  if (!rc)
    rc = command(b, "BEGIN");
  for (int64_t i = 1; i <= n && !rc; i++) {
    p.n = 0;
    user_params(&p, &t, i);
    PGresult *res = exec_prepared(b, "insert_user", &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      rc = failed(b, "insert user", res);
    PQclear(res);
  }
  return rc ? rc : command(b, "COMMIT");
}

/* Every chunk of INSERT_ROWS rows and the COMMIT in one pipeline. */
static int insert_users_pipeline(bench_pg *b, int64_t n) {
  static params p;
  static user_text t[INSERT_ROWS];
  static Oid types[MAX_PARAMS];
  static char sql[32768];
  for (int i = 0; i < MAX_PARAMS; i++)
    types[i] = user_types[i % 5];
  int64_t tail = n % INSERT_ROWS;
  int rc =
      prepare(b, "insert_users", bench_sql_insert_users(sql, sizeof(sql), BENCH_PG, INSERT_ROWS),
              INSERT_ROWS * 5, types);
  if (!rc && tail)
    rc = prepare(b, "insert_users_tail", bench_sql_insert_users(sql, sizeof(sql), BENCH_PG, tail),
                 (int)tail * 5, types);
  if (rc)
    return rc;
  if (!PQenterPipelineMode(b->pg))
    return failed(b, "enter pipeline mode", NULL);
  int sent = 0;
  rc = send_command(b, "BEGIN");
  sent++;
  for (int64_t first = 1; first <= n && !rc; first += INSERT_ROWS) {
    int64_t rows = n - first + 1 < INSERT_ROWS ? n - first + 1 : INSERT_ROWS;
    p.n = 0;
    for (int64_t r = 0; r < rows; r++)
      user_params(&p, &t[r], first + r);
    rc = send_prepared(b, rows == INSERT_ROWS ? "insert_users" : "insert_users_tail", &p);
    sent++;
  }
  if (!rc) {
    rc = send_command(b, "COMMIT");
    sent++;
  }
  if (!rc && !PQpipelineSync(b->pg))
    rc = failed(b, "pipeline sync", NULL);
  if (!rc)
    rc = drain(b, sent, "insert users");
  if (!PQexitPipelineMode(b->pg) && !rc)
    rc = failed(b, "exit pipeline mode", NULL);
  return rc;
}

static int insert_users(bench_pg *b, int64_t n) {
  return b->pipeline ? insert_users_pipeline(b, n) : insert_users_plain(b, n);
}

static int w1(bench_pg *b) {
  bench_sizes sizes = bench_sizes_get();
  double t0 = bench_now();
  int rc = insert_users(b, sizes.w1_rows);
  double t1 = bench_now();
  if (!rc)
    bench_report(b->impl, "W1", "pg", sizes.w1_rows, t0, t1);
  return rc;
}

/* ---- W2 ---- */

static int create_courses(bench_pg *b, const bench_sizes *sizes) {
  static const Oid types[4] = {INT8OID, TEXTOID, INT8OID, INT8OID};
  params p;
  char title[64];
  int rc = command(b, bench_sql_enrollment_index);
  if (!rc)
    rc = prepare(b, "insert_course", bench_sql_insert_course[BENCH_PG], 4, types);
  if (!rc)
    rc = command(b, "BEGIN");
  for (int64_t c = 1; c <= sizes->w2_courses && !rc; c++) {
    p.n = 0;
    bench_course_title(title, sizeof(title), c);
    p_int8(&p, c);
    p_text(&p, title);
    p_int8(&p, sizes->w2_seats);
    p_int8(&p, 1);
    PGresult *res = exec_prepared(b, "insert_course", &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      rc = failed(b, "insert course", res);
    PQclear(res);
  }
  return rc ? rc : command(b, "COMMIT");
}

static int prepare_w2(bench_pg *b) {
  static const Oid by_id[1] = {INT8OID};
  static const Oid enrolled[2] = {INT8OID, TEXTOID};
  static const Oid update[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
  static const Oid enrollment[3] = {INT8OID, TEXTOID, INT8OID};
  static const Oid audit[3] = {TEXTOID, TEXTOID, INT8OID};
  static const Oid outbox[12] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID,
                                 INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};
  if (prepare(b, "select_course", bench_sql_select_course[BENCH_PG], 1, by_id) ||
      prepare(b, "select_enrolled", bench_sql_select_enrolled[BENCH_PG], 2, enrolled) ||
      prepare(b, "update_course", bench_sql_update_course[BENCH_PG], 4, update) ||
      prepare(b, "insert_enrollment", bench_sql_insert_enrollment[BENCH_PG], 3, enrollment) ||
      prepare(b, "insert_audit", bench_sql_insert_audit[BENCH_PG], 3, audit) ||
      prepare(b, "insert_outbox", bench_sql_insert_outbox[BENCH_PG], 12, outbox))
    return -1;
  return 0;
}

/* What one enrollment sends; the parameters live here until it is done. */
typedef struct enrollment_work {
  int64_t course_id;
  const char *learner;
  const char *unit_id;
  char title[128];
  int64_t seats_left, version, now;
  char detail[256], payload[256];
  int payload_len;
  params course, enrolled, update, enrollment, audit, outbox;
} enrollment_work;

static void read_params(enrollment_work *w) {
  w->course.n = w->enrolled.n = 0;
  p_int8(&w->course, w->course_id);
  p_int8(&w->enrolled, w->course_id);
  p_text(&w->enrolled, w->learner);
}

/* From the course row and the enrollment check: 0 when the learner may enroll. */
static int check_reads(bench_pg *b, enrollment_work *w, PGresult *course, PGresult *enrolled) {
  if (PQresultStatus(course) != PGRES_TUPLES_OK || PQntuples(course) != 1)
    return failed(b, "select course", course);
  if (PQresultStatus(enrolled) != PGRES_TUPLES_OK)
    return failed(b, "select enrollment", enrolled);
  snprintf(w->title, sizeof(w->title), "%.*s", PQgetlength(course, 0, 1), PQgetvalue(course, 0, 1));
  w->seats_left = r_int8(course, 0, 2);
  w->version = r_int8(course, 0, 3);
  if (PQntuples(enrolled) != 0 || w->seats_left == 0)
    return failed(b, "already enrolled, or the course is full", NULL);
  return 0;
}

static void write_params(enrollment_work *w) {
  w->now = bench_epoch_ms();
  bench_audit_detail(w->detail, sizeof(w->detail), w->learner, w->title);
  w->payload_len = bench_event_payload(w->payload, sizeof(w->payload), w->course_id, w->learner);
  w->update.n = w->enrollment.n = w->audit.n = w->outbox.n = 0;
  p_int8(&w->enrollment, w->course_id);
  p_text(&w->enrollment, w->learner);
  p_int8(&w->enrollment, w->now);
  p_text(&w->audit, BENCH_AUDIT_ACTION);
  p_text(&w->audit, w->detail);
  p_int8(&w->audit, w->now);
  p_int8(&w->update, w->seats_left - 1);
  p_int8(&w->update, w->version + 1);
  p_int8(&w->update, w->course_id);
  p_int8(&w->update, w->version);
  params *o = &w->outbox;
  p_text(o, w->unit_id);
  p_int8(o, 1);
  p_text(o, "event");
  p_text(o, BENCH_EVENT_TOPIC);
  p_text(o, w->learner);
  p_bytes(o, w->payload, (size_t)w->payload_len);
  p_int8(o, w->now);
  p_int8(o, 0);
  p_int8(o, 0);
  p_int8(o, w->now);
  p_null(o);
  p_null(o);
}

/* The writes in libuow's order: inserts, the update, the outbox row. */
static const char *const write_names[4] = {"insert_enrollment", "insert_audit", "update_course",
                                           "insert_outbox"};

static params *write_params_of(enrollment_work *w, int i) {
  params *all[4] = {&w->enrollment, &w->audit, &w->update, &w->outbox};
  return all[i];
}

static int enroll_plain(bench_pg *b, enrollment_work *w) {
  int rc = command(b, "BEGIN");
  if (rc)
    return rc;
  read_params(w);
  PGresult *course = exec_prepared(b, "select_course", &w->course);
  PGresult *enrolled = exec_prepared(b, "select_enrolled", &w->enrolled);
  rc = check_reads(b, w, course, enrolled);
  PQclear(course);
  PQclear(enrolled);
  if (!rc)
    write_params(w);
  for (int i = 0; i < 4 && !rc; i++) {
    PGresult *res = exec_prepared(b, write_names[i], write_params_of(w, i));
    if (!ok(res) || (i == 2 && strcmp(PQcmdTuples(res), "1") != 0))
      rc = failed(b, write_names[i], res);
    PQclear(res);
  }
  if (rc) {
    command(b, "ROLLBACK");
    return rc;
  }
  return command(b, "COMMIT");
}

/* Two round trips: [BEGIN, lock the course, check the learner] and [writes, COMMIT].
 * The COMMIT can ride with the UPDATE because this transaction holds the row
 * lock: the version check cannot fail, so no answer needs reading before COMMIT. */
static int enroll_pipeline(bench_pg *b, enrollment_work *w) {
  read_params(w);
  if (send_command(b, "BEGIN") || send_prepared(b, "select_course", &w->course) ||
      send_prepared(b, "select_enrolled", &w->enrolled))
    return -1;
  if (!PQpipelineSync(b->pg))
    return failed(b, "pipeline sync", NULL);
  PGresult *begin = next_result(b);
  PGresult *course = next_result(b);
  PGresult *enrolled = next_result(b);
  int rc = PQresultStatus(begin) == PGRES_COMMAND_OK ? 0 : failed(b, "BEGIN", begin);
  if (!rc)
    rc = check_reads(b, w, course, enrolled);
  PQclear(begin);
  PQclear(course);
  PQclear(enrolled);
  if (read_sync(b) || rc) {
    PQexitPipelineMode(b->pg);
    command(b, "ROLLBACK");
    PQenterPipelineMode(b->pg);
    return -1;
  }
  write_params(w);
  for (int i = 0; i < 4; i++)
    if (send_prepared(b, write_names[i], write_params_of(w, i)))
      return -1;
  if (send_command(b, "COMMIT"))
    return -1;
  if (!PQpipelineSync(b->pg))
    return failed(b, "pipeline sync", NULL);
  for (int i = 0; i < 5; i++) {
    PGresult *res = next_result(b);
    if (!ok(res) || (i == 2 && strcmp(PQcmdTuples(res), "1") != 0))
      rc = rc ? rc : failed(b, i < 4 ? write_names[i] : "COMMIT", res);
    PQclear(res);
  }
  return read_sync(b) || rc ? -1 : 0;
}

static int w2(bench_pg *b) {
  bench_sizes sizes = bench_sizes_get();
  int rc = create_courses(b, &sizes);
  if (!rc)
    rc = prepare_w2(b);
  if (!rc && b->pipeline && !PQenterPipelineMode(b->pg))
    rc = failed(b, "enter pipeline mode", NULL);
  if (rc)
    return rc;
  static enrollment_work w;
  uint64_t nonce = bench_nonce();
  char learner[64], unit_id[64];
  double t0 = bench_now();
  for (int64_t k = 0; k < sizes.w2_units && !rc; k++) {
    bench_learner(learner, sizeof(learner), k);
    bench_unit_id(unit_id, sizeof(unit_id), nonce, (uint64_t)k + 1);
    w.course_id = bench_course_of(k, sizes.w2_courses);
    w.learner = learner;
    w.unit_id = unit_id;
    rc = b->pipeline ? enroll_pipeline(b, &w) : enroll_plain(b, &w);
  }
  double t1 = bench_now();
  if (b->pipeline)
    PQexitPipelineMode(b->pg);
  if (!rc)
    bench_report(b->impl, "W2", "pg", sizes.w2_units, t0, t1);
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

static int load_users(bench_pg *b, PGresult *res, user *users, int64_t expected) {
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != expected)
    return failed(b, "load users", res);
  for (int r = 0; r < PQntuples(res); r++) {
    user *u = &users[r];
    u->id = r_int8(res, r, 0);
    u->email = r_text(res, r, 1);
    u->name = r_text(res, r, 2);
    u->score = r_float8(res, r, 3);
    u->version = r_int8(res, r, 4);
    if (!u->email || !u->name)
      return failed(b, "out of memory", NULL);
  }
  return 0;
}

static void update_params(params *p, user *u) {
  u->score += BENCH_W3_DELTA;
  p->n = 0;
  p_float8(p, u->score);
  p_int8(p, u->version + 1);
  p_int8(p, u->id);
  p_int8(p, u->version);
  u->version++;
}

static int load_modify_plain(bench_pg *b, user *users, int64_t n) {
  static params p, none;
  int rc = command(b, "BEGIN");
  if (rc)
    return rc;
  PGresult *res = exec_prepared(b, "select_users", &none);
  rc = load_users(b, res, users, n);
  PQclear(res);
  for (int64_t i = 0; i < n && !rc; i++) {
    if (users[i].id % BENCH_W3_EVERY != 0)
      continue;
    update_params(&p, &users[i]);
    res = exec_prepared(b, "update_user", &p);
    if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0)
      rc = failed(b, "update user (changed by another unit?)", res);
    PQclear(res);
  }
  if (rc) {
    command(b, "ROLLBACK");
    return rc;
  }
  return command(b, "COMMIT");
}

/* Three round trips: [BEGIN, SELECT], [every UPDATE], [COMMIT once each matched its row]. */
static int load_modify_pipeline(bench_pg *b, user *users, int64_t n) {
  static params p, none; /* libpq copies the values when a statement is queued */
  int rc = 0;
  if (!PQenterPipelineMode(b->pg) || send_command(b, "BEGIN") ||
      send_prepared(b, "select_users", &none) || !PQpipelineSync(b->pg))
    rc = failed(b, "send the load", NULL);
  if (!rc) {
    PGresult *begin = next_result(b);
    PGresult *res = next_result(b);
    rc = load_users(b, res, users, n);
    PQclear(begin);
    PQclear(res);
    if (read_sync(b))
      rc = -1;
  }
  int sent = 0;
  for (int64_t i = 0; i < n && !rc; i++) {
    if (users[i].id % BENCH_W3_EVERY != 0)
      continue;
    update_params(&p, &users[i]);
    rc = send_prepared(b, "update_user", &p);
    sent++;
  }
  if (!rc && !PQpipelineSync(b->pg))
    rc = failed(b, "pipeline sync", NULL);
  for (int i = 0; i < sent && !rc; i++) {
    PGresult *res = next_result(b);
    if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0)
      rc = failed(b, "update user (changed by another unit?)", res);
    PQclear(res);
  }
  if (!rc)
    rc = read_sync(b);
  if (!PQexitPipelineMode(b->pg) && !rc)
    rc = failed(b, "exit pipeline mode", NULL);
  if (rc) {
    command(b, "ROLLBACK");
    return rc;
  }
  return command(b, "COMMIT");
}

static int w3(bench_pg *b) {
  static const Oid update_types[4] = {FLOAT8OID, INT8OID, INT8OID, INT8OID};
  bench_sizes sizes = bench_sizes_get();
  int64_t n = sizes.w3_users;
  user *users = calloc((size_t)n, sizeof(*users));
  int rc = users ? insert_users(b, n) : failed(b, "out of memory", NULL);
  if (!rc)
    rc = prepare(b, "select_users", bench_sql_select_users[BENCH_PG], 0, NULL);
  if (!rc)
    rc = prepare(b, "update_user", bench_sql_update_user_score[BENCH_PG], 4, update_types);
  if (!rc) {
    double t0 = bench_now();
    rc = b->pipeline ? load_modify_pipeline(b, users, n) : load_modify_plain(b, users, n);
    for (int64_t i = 0; i < n; i++) {
      free(users[i].email);
      free(users[i].name);
    }
    double t1 = bench_now();
    if (!rc)
      bench_report(b->impl, "W3", "pg", n, t0, t1);
  }
  free(users);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 5 || strcmp(argv[2], "pg") != 0 ||
      (strcmp(argv[4], "plain") != 0 && strcmp(argv[4], "pipeline") != 0)) {
    fprintf(stderr, "usage: bench_libpq W1|W2|W3 pg URL plain|pipeline\n");
    return 2;
  }
  bench_pg b = {.pipeline = strcmp(argv[4], "pipeline") == 0};
  b.impl = b.pipeline ? "libpq-pipeline" : "libpq";
  int (*workload)(bench_pg *) = strcmp(argv[1], "W1") == 0   ? w1
                                : strcmp(argv[1], "W2") == 0 ? w2
                                : strcmp(argv[1], "W3") == 0 ? w3
                                                             : NULL;
  if (!workload) {
    fprintf(stderr, "bench_libpq: unknown workload %s\n", argv[1]);
    return 2;
  }
  int rc = open_db(&b, argv[3], argv[1]);
  if (!rc)
    rc = workload(&b);
  if (rc)
    bench_na(b.impl, argv[1], "pg", "%s", b.why);
  PQfinish(b.pg);
  return 0;
}
