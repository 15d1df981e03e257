/*
 * w_2pc.c - the reference for W4: atomic commit of one row in SQLite and one
 * in PostgreSQL, written by hand with the protocol libuow uses (DESIGN.md,
 * "Atomic commit across stores"; SQLite decides, since it cannot prepare):
 *
 *   1. PostgreSQL, one pipeline: BEGIN, INSERT, PREPARE TRANSACTION gid;
 *   2. SQLite, one transaction: the row, the 'commit' decision record, and the
 *      deletion of the previous unit's decision (finished: its prepared
 *      transaction was committed), then COMMIT: the commit point;
 *   3. PostgreSQL: COMMIT PREPARED gid.
 *
 * A failure before 2 rolls the prepared transaction back; after 2 the unit is
 * committed (recovery would finish 3). Same tables and statements as libuow.
 *
 *   bench_2pc W4 SQLITE_PATH PG_URL
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *const IMPL = "raw-2pc";

enum { INSERT_LOCAL, INSERT_DECISION, DELETE_DECISION, BEGIN, COMMIT, ROLLBACK, STATEMENTS };

typedef struct two_phase {
  sqlite3 *db;
  sqlite3_stmt *s[STATEMENTS];
  PGconn *pg;
  char why[1024];
} two_phase;

static int lite_failed(two_phase *t, int rc, const char *what) {
  if (!t->why[0])
    snprintf(t->why, sizeof(t->why), "sqlite: %s: %s (%d)", what, sqlite3_errmsg(t->db), rc);
  return -1;
}

static int pg_failed(two_phase *t, const char *what, const PGresult *res) {
  if (!t->why[0])
    snprintf(t->why, sizeof(t->why), "postgresql: %s: %s", what,
             res ? PQresultErrorMessage(res) : PQerrorMessage(t->pg));
  return -1;
}

static int lite_exec(two_phase *t, const char *sql) {
  int rc = sqlite3_exec(t->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : lite_failed(t, rc, sql);
}

static int lite_run(two_phase *t, sqlite3_stmt *stmt) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : lite_failed(t, rc, sqlite3_sql(stmt));
}

static int pg_command(two_phase *t, const char *sql) {
  PGresult *res = PQexec(t->pg, sql);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_failed(t, sql, res);
  PQclear(res);
  return rc;
}

static int open_stores(two_phase *t, const char *path, const char *url) {
  int rc = sqlite3_open_v2(path, &t->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    return lite_failed(t, rc, "open");
  if (lite_exec(t, "PRAGMA journal_mode=wal") || lite_exec(t, "PRAGMA synchronous=full") ||
      lite_exec(t, "PRAGMA foreign_keys=ON"))
    return -1;
  for (const char *const *ddl = bench_schema(BENCH_SQLITE, "W4"); *ddl; ddl++)
    if (lite_exec(t, *ddl))
      return -1;
  const char *sql[STATEMENTS] = {bench_sql_insert_local_entry,
                                 bench_sql_insert_decision,
                                 bench_sql_delete_decision,
                                 "BEGIN",
                                 "COMMIT",
                                 "ROLLBACK"};
  for (int i = 0; i < STATEMENTS; i++)
    if ((rc = sqlite3_prepare_v3(t->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &t->s[i], NULL)))
      return lite_failed(t, rc, sql[i]);

  t->pg = PQconnectdb(url);
  if (PQstatus(t->pg) != CONNECTION_OK)
    return pg_failed(t, "connect", NULL);
  for (const char *const *ddl = bench_schema(BENCH_PG, "W4"); *ddl; ddl++)
    if (pg_command(t, *ddl))
      return -1;
  /* Text parameters: four small values, and the PREPARE below has none. */
  PGresult *res = PQprepare(t->pg, "insert_remote", bench_sql_insert_remote_entry, 0, NULL);
  rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_failed(t, "prepare", res);
  PQclear(res);
  return rc;
}

/* Step 1: BEGIN, INSERT, PREPARE TRANSACTION in one round trip. */
static int prepare_remote(two_phase *t, int64_t k, const char *account, const char *gid) {
  char id[32], amount[32], prepare[256];
  snprintf(id, sizeof(id), "%" PRId64, bench_entry_id(k));
  snprintf(amount, sizeof(amount), "%.17g", bench_entry_amount(k));
  snprintf(prepare, sizeof(prepare), "PREPARE TRANSACTION '%s'", gid);
  const char *values[4] = {id, account, amount, "1"};
  if (!PQenterPipelineMode(t->pg) ||
      !PQsendQueryParams(t->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
      !PQsendQueryPrepared(t->pg, "insert_remote", 4, values, NULL, NULL, 0) ||
      !PQsendQueryParams(t->pg, prepare, 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(t->pg))
    return pg_failed(t, "send", NULL);
  int rc = 0;
  for (int i = 0; i < 3; i++) {
    PGresult *res = PQgetResult(t->pg);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc)
      rc = pg_failed(t, i == 2 ? "PREPARE TRANSACTION" : "insert", res);
    PQclear(res);
    PQclear(PQgetResult(t->pg)); /* the NULL that ends each statement's results */
  }
  PGresult *sync = PQgetResult(t->pg);
  if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC && !rc)
    rc = pg_failed(t, "sync", sync);
  PQclear(sync);
  if (!PQexitPipelineMode(t->pg) && !rc)
    rc = pg_failed(t, "exit pipeline mode", NULL);
  return rc;
}

/* Step 2: the decider's transaction; its COMMIT is the commit point. */
static int decide(two_phase *t, int64_t k, const char *account, const char *unit_id,
                  const char *finished) {
  sqlite3_stmt **s = t->s;
  if (lite_run(t, s[BEGIN]))
    return -1;
  if (finished[0]) {
    sqlite3_bind_text(s[DELETE_DECISION], 1, finished, -1, SQLITE_STATIC);
    if (lite_run(t, s[DELETE_DECISION]))
      goto rollback;
  }
  sqlite3_bind_int64(s[INSERT_LOCAL], 1, bench_entry_id(k));
  sqlite3_bind_text(s[INSERT_LOCAL], 2, account, -1, SQLITE_STATIC);
  sqlite3_bind_double(s[INSERT_LOCAL], 3, bench_entry_amount(k));
  sqlite3_bind_int64(s[INSERT_LOCAL], 4, 1);
  if (lite_run(t, s[INSERT_LOCAL]))
    goto rollback;
  sqlite3_bind_text(s[INSERT_DECISION], 1, unit_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s[INSERT_DECISION], 2, "commit", -1, SQLITE_STATIC);
  sqlite3_bind_text(s[INSERT_DECISION], 3, "remote", -1, SQLITE_STATIC);
  sqlite3_bind_int64(s[INSERT_DECISION], 4, bench_epoch_ms());
  if (lite_run(t, s[INSERT_DECISION]))
    goto rollback;
  if (lite_run(t, s[COMMIT]))
    goto rollback;
  return 0;
rollback:
  sqlite3_step(s[ROLLBACK]);
  sqlite3_reset(s[ROLLBACK]);
  return -1;
}

static int one_unit(two_phase *t, int64_t k, const char *unit_id, char *finished, size_t cap) {
  char account[64], gid[128], sql[256];
  bench_entry_account(account, sizeof(account), k);
  snprintf(gid, sizeof(gid), "uow1:%s:local:remote", unit_id);
  if (prepare_remote(t, k, account, gid))
    return -1;
  if (decide(t, k, account, unit_id, finished)) {
    snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%s'", gid);
    pg_command(t, sql);
    return -1;
  }
  /* Committed. A failure from here on leaves work for recovery, not a failed unit. */
  snprintf(sql, sizeof(sql), "COMMIT PREPARED '%s'", gid);
  if (pg_command(t, sql))
    return -1;
  snprintf(finished, cap, "%s", unit_id);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[1], "W4") != 0) {
    fprintf(stderr, "usage: bench_2pc W4 SQLITE_PATH PG_URL\n");
    return 2;
  }
  bench_sizes sizes = bench_sizes_get();
  two_phase t = {0};
  int rc = open_stores(&t, argv[2], argv[3]);
  if (!rc) {
    uint64_t nonce = bench_nonce();
    char unit_id[64], finished[64] = "";
    double t0 = bench_now();
    for (int64_t k = 0; k < sizes.w4_units && !rc; k++) {
      bench_unit_id(unit_id, sizeof(unit_id), nonce, (uint64_t)k + 1);
      rc = one_unit(&t, k, unit_id, finished, sizeof(finished));
    }
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W4", "sqlite+pg", sizes.w4_units, t0, t1);
  }
  if (rc)
    bench_na(IMPL, "W4", "sqlite+pg", "%s", t.why);
  for (int i = 0; i < STATEMENTS; i++)
    sqlite3_finalize(t.s[i]);
  sqlite3_close(t.db);
  PQfinish(t.pg);
  return 0;
}
