/*
 * bench.h - what every benchmark program shares: the sizes of the workloads,
 * the data they write, the schema and statement text of the reference
 * programs (the same text libuow sends, so that the work is identical), a
 * clock, and the one-line result format that bench/run.sh collects.
 *
 * Every program is run as `PROGRAM WORKLOAD STORE...`: W1, W2 and W3 take
 * `sqlite PATH` or `pg URL`, W4 takes `PATH URL`. It prints one line,
 *   result IMPL WORKLOAD STORE VALUE UNIT
 * or, when the workload cannot run here,
 *   na IMPL WORKLOAD STORE reason...
 * and exits 0 either way: only a broken setup (bad arguments, no server)
 * exits non-zero.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sizes (QUICK=1 in the environment shrinks them) ---- */

typedef struct bench_sizes {
  int64_t w1_rows;    /* W1: users inserted by one unit */
  int64_t w2_courses; /* W2: courses ... */
  int64_t w2_seats;   /* ... with this many seats each */
  int64_t w2_units;   /* W2: sequential enrollments */
  int64_t w3_users;   /* W3: users loaded by one unit (every 10th changed) */
  int64_t w4_units;   /* W4: units writing one row to each store */
} bench_sizes;

bench_sizes bench_sizes_get(void);
bool bench_quick(void);

/* ---- the clock ---- */

/* Seconds on a monotonic clock. */
double bench_now(void);
/* Wall-clock milliseconds since the epoch (created_at columns). */
int64_t bench_epoch_ms(void);

/* ---- results ---- */

/* The value is a throughput for W1, W2 and W4 (rows/s, units/s) and a time for W3 (ms). */
void bench_result(const char *impl, const char *workload, const char *store, double value,
                  const char *unit);
void bench_na(const char *impl, const char *workload, const char *store, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Print a W1/W2/W4 throughput or a W3 time from a count and two clock readings. */
void bench_report(const char *impl, const char *workload, const char *store, int64_t count,
                  double started, double finished);

/* ---- the data: the same for every implementation ---- */

/* User i (1-based) of W1 and W3. */
void bench_user_email(char *buf, size_t cap, int64_t i);
void bench_user_name(char *buf, size_t cap, int64_t i);
double bench_user_score(int64_t i);
/* W3 changes the score of every user whose id is a multiple of 10 by this much. */
#define BENCH_W3_EVERY 10
#define BENCH_W3_DELTA 0.5

/* Course c (1-based) of W2. */
void bench_course_title(char *buf, size_t cap, int64_t c);
/* Enrollment k (0-based) of W2: the learner and the course. */
void bench_learner(char *buf, size_t cap, int64_t k);
int64_t bench_course_of(int64_t k, int64_t courses);
/* The audit detail and the event payload of an enrollment. */
void bench_audit_detail(char *buf, size_t cap, const char *learner, const char *title);
int bench_event_payload(char *buf, size_t cap, int64_t course, const char *learner);
#define BENCH_AUDIT_ACTION "enroll"
#define BENCH_EVENT_TOPIC "enrollment.created"

/* W4 unit k (0-based): the row's id, account and amount in both stores. */
int64_t bench_entry_id(int64_t k);
void bench_entry_account(char *buf, size_t cap, int64_t k);
double bench_entry_amount(int64_t k);

/* A unit id as libuow writes it in uow_outbox.unit_id and uow_decision.unit_id. */
void bench_unit_id(char *buf, size_t cap, uint64_t nonce, uint64_t seq);
uint64_t bench_nonce(void);

/* ---- schema and statements of the reference programs ----
 *
 * The text below is what libuow 0.1 generates for the entities in w_uow.c
 * (src/stores/sql.c): the reference programs create the same tables and send
 * the same statements, so only the way of sending them differs. The index on
 * enrollments is created by every implementation (libuow through uow_exec).
 */

typedef enum bench_dialect { BENCH_SQLITE, BENCH_PG } bench_dialect;

/* CREATE TABLE statements of one workload, NULL-terminated. */
const char *const *bench_schema(bench_dialect d, const char *workload);

extern const char *const bench_sql_enrollment_index;

/* W1 and W3: users. Insert values: id, email, name, score, version. */
extern const char *const bench_sql_insert_user[2];
/* SELECT every user: id, email, name, score, version. */
extern const char *const bench_sql_select_users[2];
/* UPDATE score and version; params: score, new version, id, expected version. */
extern const char *const bench_sql_update_user_score[2];
/* A multi-row INSERT of `rows` users ($1...), written into buf; returns buf. */
char *bench_sql_insert_users(char *buf, size_t cap, bench_dialect d, int64_t rows);

/* W2. */
extern const char *const bench_sql_insert_course[2];     /* id, title, seats_left, version */
extern const char *const bench_sql_select_course[2];     /* by id (PostgreSQL: FOR UPDATE) */
extern const char *const bench_sql_select_enrolled[2];   /* course_id, learner */
extern const char *const bench_sql_update_course[2];     /* seats_left, version, id, version */
extern const char *const bench_sql_insert_enrollment[2]; /* course_id, learner, enrolled_at */
extern const char *const bench_sql_insert_audit[2];      /* action, detail, at */
/* unit_id, seq, kind, topic, event_key, payload, created_at, state, attempts,
 * next_attempt_at, delivered_at, last_error */
extern const char *const bench_sql_insert_outbox[2];

/* W4: one row in each store, and the decision record in SQLite. */
extern const char *const bench_sql_insert_local_entry;  /* SQLite: id, account, amount, version */
extern const char *const bench_sql_insert_remote_entry; /* PostgreSQL: the same */
/* SQLite: unit_id, outcome, participants, created_at */
extern const char *const bench_sql_insert_decision;
/* SQLite: a finished unit's id */
extern const char *const bench_sql_delete_decision;

#endif /* BENCH_H */
