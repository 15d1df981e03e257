/*
 * multistore.c - see multistore.h. The oracle reads each database directly
 * (sqlite3, libpq), never through libuow.
 */
#include "multistore.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

static const uow_column ms_columns[] = {
    UOW_COLUMN(ms_row, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(ms_row, note, UOW_TEXT, 0),
};
static const uow_entity ms_a_entity = UOW_ENTITY(ms_row, "ms_a", ms_columns);
static const uow_entity ms_b_entity = UOW_ENTITY(ms_row, "ms_b", ms_columns);
static const uow_entity ms_c_entity = UOW_ENTITY(ms_row, "ms_c", ms_columns);

static const char *pg_url(void) {
  const char *url = getenv("UOW_TEST_PG_URL");
  if (!url || !*url)
    fail_msg("UOW_TEST_PG_URL is not set (the suite needs the test PostgreSQL server)");
  return url;
}

/* The URL of database uowtest2 on the same server. */
static void second_url(char *out, size_t cap) {
  const char *url = pg_url();
  const char *db = strstr(url, "/uowtest");
  if (!db)
    fail_msg("UOW_TEST_PG_URL does not name database uowtest: %s", url);
  snprintf(out, cap, "%.*s/uowtest2%s", (int)(db - url), url, db + strlen("/uowtest"));
}

static PGconn *pg_connect(const char *url) {
  PGconn *conn = PQconnectdb(url);
  if (PQstatus(conn) != CONNECTION_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    PQfinish(conn);
    fail_msg("cannot connect to %s: %s", url, msg);
  }
  PQsetNoticeProcessor(conn, NULL, NULL);
  return conn;
}

static PGresult *pg_must(PGconn *conn, const char *sql) {
  PGresult *res = PQexec(conn, sql);
  ExecStatusType s = PQresultStatus(res);
  if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
    fail_msg("%s: %s", sql, msg);
  }
  return res;
}

void ms_pg_exec(const char *url, const char *sql) {
  PGconn *conn = pg_connect(url);
  PQclear(pg_must(conn, sql));
  PQfinish(conn);
}

/* Roll back every prepared transaction of libuow in the database, drop the tables. */
static void pg_reset(const char *url) {
  PGconn *conn = pg_connect(url);
  PGresult *res = pg_must(conn, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'uow1:%' "
                                "AND database = current_database()");
  for (int i = 0; i < PQntuples(res); i++) {
    char sql[512];
    snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%s'", PQgetvalue(res, i, 0));
    PQclear(pg_must(conn, sql));
  }
  PQclear(res);
  PQclear(pg_must(conn, "DROP TABLE IF EXISTS ms_a, ms_b, ms_c, uow_decision, uow_outbox"));
  PQfinish(conn);
}

static void ensure_second_database(void) {
  PGconn *conn = pg_connect(pg_url());
  PGresult *res = pg_must(conn, "SELECT 1 FROM pg_database WHERE datname = 'uowtest2'");
  bool exists = PQntuples(res) > 0;
  PQclear(res);
  if (!exists)
    PQclear(pg_must(conn, "CREATE DATABASE uowtest2"));
  PQfinish(conn);
}

static void add(ms_world *w, const char *name, const uow_entity *entity, const char *url) {
  size_t i = w->nstores++;
  w->names[i] = name;
  w->entities[i] = entity;
  snprintf(w->urls[i], sizeof(w->urls[i]), "%s", url);
}

void ms_prepare(ms_world *w, ms_topology topology) {
  memset(w, 0, sizeof(*w));
  w->topology = topology;
  const char *base = getenv("UOW_TEST_TMPDIR");
  snprintf(w->dir, sizeof(w->dir), "%s/ms.XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(w->dir))
    fail_msg("mkdtemp %s: %s", w->dir, strerror(errno));
  char lite[1200], second[2048];
  snprintf(lite, sizeof(lite), "sqlite:%s/lite.db", w->dir);
  second_url(second, sizeof(second));
  ensure_second_database();
  pg_reset(pg_url());
  pg_reset(second);
  if (topology != MS_PG_PG)
    add(w, "lite", &ms_a_entity, lite);
  add(w, "pg1", &ms_b_entity, pg_url());
  if (topology != MS_SQLITE_PG)
    add(w, "pg2", &ms_c_entity, second);
}

void ms_cleanup(ms_world *w) {
  char path[1200];
  const char *files[] = {"lite.db", "lite.db-wal", "lite.db-shm", "lite.db-journal"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", w->dir, files[i]);
    unlink(path);
  }
  rmdir(w->dir);
}

uow_env *ms_try_open(const ms_world *w, const char *decider_store, bool schema) {
  uow_env_options opts = UOW_ENV_OPTIONS_INIT;
  opts.decider_store = decider_store;
  uow_env *env = NULL;
  if (uow_env_open(&opts, &env))
    return NULL;
  for (size_t i = 0; i < w->nstores; i++) {
    if (uow_env_add_store(env, w->names[i], w->urls[i]) ||
        uow_env_map(env, w->entities[i], w->names[i])) {
      fprintf(stderr, "store %s: %s\n", w->names[i], uow_env_errmsg(env));
      uow_env_close(env);
      return NULL;
    }
  }
  if (schema && uow_env_create_schema(env)) {
    fprintf(stderr, "create_schema: %s\n", uow_env_errmsg(env));
    uow_env_close(env);
    return NULL;
  }
  return env;
}

uow_env *ms_open(const ms_world *w, const char *decider_store) {
  uow_env *env = ms_try_open(w, decider_store, true);
  if (!env)
    fail_msg("cannot open the environment of the test world (see above)");
  return env;
}

int ms_unit(uow_env *env, const ms_world *w, int64_t n) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc)
    return rc;
  char note[64];
  snprintf(note, sizeof(note), "unit %lld", (long long)n);
  for (size_t i = 0; !rc && i < w->nstores; i++) {
    ms_row *row = NULL;
    if (!(rc = uow_new(unit, w->entities[i], (void **)&row))) {
      row->id = n;
      row->note = uow_strdup(unit, note);
    }
  }
  if (!rc)
    rc = uow_emit(unit, "ms.unit", note, note, strlen(note));
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    uow_rollback(unit);
  uow_end(unit);
  return rc;
}

/* present[n] = true for every id in the table (1..max). */
static void read_ids(const char *url, const char *table, bool *present, int64_t max) {
  char sql[128];
  snprintf(sql, sizeof(sql), "SELECT id FROM %s", table);
  if (strncmp(url, "sqlite:", 7) == 0) {
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_open_v2(url + 7, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
      char msg[512];
      snprintf(msg, sizeof(msg), "%s", db ? sqlite3_errmsg(db) : "out of memory");
      sqlite3_close(db);
      fail_msg("%s: %s", sql, msg);
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(stmt, 0);
      if (id >= 1 && id <= max)
        present[id] = true;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return;
  }
  PGconn *conn = pg_connect(url);
  PGresult *res = pg_must(conn, sql);
  for (int r = 0; r < PQntuples(res); r++) {
    long long id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
    if (id >= 1 && id <= max)
      present[id] = true;
  }
  PQclear(res);
  PQfinish(conn);
}

void ms_verify(const ms_world *w, const bool *acked, int64_t max, ms_counts *out) {
  memset(out, 0, sizeof(*out));
  bool *present[MS_STORES_MAX] = {NULL, NULL, NULL};
  for (size_t i = 0; i < w->nstores; i++) {
    present[i] = calloc((size_t)max + 1, sizeof(bool));
    assert_non_null(present[i]);
    read_ids(w->urls[i], w->entities[i]->table, present[i], max);
  }
  for (int64_t n = 1; n <= max; n++) {
    size_t in = 0;
    for (size_t i = 0; i < w->nstores; i++)
      in += present[i][n];
    if (in == w->nstores)
      out->complete++;
    else if (in == 0)
      out->absent++;
    else
      out->torn++;
    if (acked && acked[n]) {
      out->acknowledged++;
      if (in == 0)
        out->lost++;
    }
  }
  for (size_t i = 0; i < w->nstores; i++)
    free(present[i]);
}

static long count_at(const char *url, const char *sql) {
  long n = 0;
  if (strncmp(url, "sqlite:", 7) == 0) {
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_open_v2(url + 7, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
      n = (long)sqlite3_column_int64(stmt, 0);
    else
      fail_msg("%s: %s", sql, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }
  PGconn *conn = pg_connect(url);
  PGresult *res = pg_must(conn, sql);
  n = PQntuples(res) ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  PQclear(res);
  PQfinish(conn);
  return n;
}

long ms_prepared(const ms_world *w) {
  long n = 0;
  for (size_t i = 0; i < w->nstores; i++)
    if (strncmp(w->urls[i], "sqlite:", 7) != 0)
      n += count_at(w->urls[i], "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'uow1:%' "
                                "AND database = current_database()");
  return n;
}

long ms_count_all(const ms_world *w, const char *table, const char *where) {
  long n = 0;
  char sql[512];
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s%s%s", table, where ? " WHERE " : "",
           where ? where : "");
  for (size_t i = 0; i < w->nstores; i++)
    n += count_at(w->urls[i], sql);
  return n;
}
