/*
 * support.c - test entities, fresh databases for each environment, and the
 * oracle that reads them with libsqlite3 or libpq directly. See support.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

/* ---- entities ---- */

static const uow_column user_columns[] = {
    UOW_COLUMN(user, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(user, email, UOW_TEXT, UOW_UNIQUE),
    UOW_COLUMN(user, name, UOW_TEXT, 0),
    UOW_COLUMN(user, score, UOW_DOUBLE, 0),
    UOW_COLUMN(user, version, UOW_INT64, UOW_VERSION),
};
const uow_entity user_entity = UOW_ENTITY(user, "users", user_columns);

static const uow_column profile_columns[] = {
    UOW_COLUMN(profile, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(profile, email, UOW_TEXT, 0),
    UOW_COLUMN(profile, score, UOW_DOUBLE, 0),
};
const uow_entity profile_entity = UOW_ENTITY(profile, "profiles", profile_columns);

static const uow_column course_columns[] = {
    UOW_COLUMN(course, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(course, title, UOW_TEXT, 0),
    UOW_COLUMN(course, seats, UOW_INT64, 0),
    UOW_COLUMN(course, version, UOW_INT64, UOW_VERSION),
};
const uow_entity course_entity = UOW_ENTITY(course, "courses", course_columns);

static const uow_column enrollment_columns[] = {
    UOW_COLUMN(enrollment, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_REFERENCE(enrollment, course_id, UOW_INT64, course, course_entity, 0),
    UOW_COLUMN(enrollment, learner, UOW_TEXT, 0),
    UOW_COLUMN(enrollment, version, UOW_INT64, UOW_VERSION),
};
const uow_entity enrollment_entity = UOW_ENTITY(enrollment, "enrollments", enrollment_columns);

static const uow_column tag_columns[] = {
    UOW_COLUMN(tag, name, UOW_TEXT, UOW_PRIMARY_KEY),
    UOW_COLUMN(tag, label, UOW_TEXT, 0),
};
const uow_entity tag_entity = UOW_ENTITY(tag, "tags", tag_columns);

static const uow_column note_columns[] = {
    UOW_COLUMN(note, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(note, body, UOW_TEXT, UOW_NULLABLE),
    UOW_COLUMN(note, rank, UOW_INT64, UOW_NULLABLE),
    UOW_COLUMN(note, weight, UOW_DOUBLE, 0),
    UOW_COLUMN(note, pinned, UOW_BOOL, 0),
    UOW_COLUMN(note, data, UOW_BLOB, UOW_NULLABLE),
};
const uow_entity note_entity = UOW_ENTITY(note, "notes", note_columns);

static const uow_column outbox_event_columns[] = {
    UOW_COLUMN(outbox_event, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(outbox_event, unit_id, UOW_TEXT, 0),
    UOW_COLUMN(outbox_event, seq, UOW_INT64, 0),
    UOW_COLUMN(outbox_event, kind, UOW_TEXT, 0),
    UOW_COLUMN(outbox_event, topic, UOW_TEXT, 0),
    UOW_COLUMN(outbox_event, event_key, UOW_TEXT, UOW_NULLABLE),
    UOW_COLUMN(outbox_event, payload, UOW_BLOB, UOW_NULLABLE),
};
const uow_entity outbox_event_entity = UOW_ENTITY(outbox_event, "uow_outbox", outbox_event_columns);

static const uow_column card_columns[] = {
    UOW_COLUMN(card, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(card, title, UOW_TEXT, 0),
    UOW_COLUMN(card, score, UOW_DOUBLE, 0),
    UOW_COLUMN(card, version, UOW_INT64, UOW_VERSION),
};
const uow_entity card_entity = UOW_ENTITY(card, "cards", card_columns);

/* Mapped in this order: a referenced entity before the entities that reference it. */
static const uow_entity *const test_entities[] = {
    &user_entity, &profile_entity, &course_entity, &enrollment_entity, &tag_entity, &note_entity};
enum { NENTITIES = sizeof(test_entities) / sizeof(test_entities[0]) };

/* Dropped children first (the library's own tables too, so that create_schema makes them anew). */
static const char *const test_tables[] = {
    "enrollments", "courses",    "users",        "profiles",        "tags",
    "notes",       "uow_outbox", "uow_decision", "uow_relay_lease", "flush_log"};

/* ---- the store under test ---- */

const char *test_store_kind(void) {
  const char *store = getenv("UOW_TEST_STORE");
  if (!store || !*store || strcmp(store, "sqlite") == 0)
    return "sqlite";
  if (strcmp(store, "postgresql") == 0 || strcmp(store, "postgres") == 0)
    return "postgresql";
  fail_msg("UOW_TEST_STORE='%s': expected sqlite or postgresql", store);
  return "sqlite";
}

bool test_on_sqlite(void) { return strcmp(test_store_kind(), "sqlite") == 0; }

/* ---- the current database ---- */

static char current_dir[1024]; /* the temporary directory, "" when none */
static char current_url[2048]; /* URL of store "main" */
static uow_env *current_owner; /* the environment that created them */

/* Environments opened here, with the URL of their store "main". */
enum { MAX_ENVS = 16 };
static struct {
  uow_env *env;
  char url[2048];
} envs[MAX_ENVS];

static void remember(uow_env *env, const char *url) {
  for (size_t i = 0; i < MAX_ENVS; i++)
    if (!envs[i].env) {
      envs[i].env = env;
      snprintf(envs[i].url, sizeof(envs[i].url), "%s", url);
      return;
    }
  fail_msg("support.c: more than %d environments open", MAX_ENVS);
}

static const char *url_of(const uow_env *env) {
  for (size_t i = 0; i < MAX_ENVS; i++)
    if (env && envs[i].env == env)
      return envs[i].url;
  fail_msg("support.c: that environment was not opened by test_env_open*()");
  return NULL;
}

static void forget(const uow_env *env) {
  for (size_t i = 0; i < MAX_ENVS; i++)
    if (envs[i].env == env)
      envs[i].env = NULL;
}

const char *test_url(void) { return current_url; }
const char *test_dir(void) { return current_dir; }

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *entry;
    char path[2048];
    while ((entry = readdir(d)) != NULL) {
      if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
      if (unlink(path) != 0)
        fprintf(stderr, "support: cannot remove %s: %s\n", path, strerror(errno));
    }
    closedir(d);
  }
  if (rmdir(dir) != 0)
    fprintf(stderr, "support: cannot remove %s: %s\n", dir, strerror(errno));
}

static int make_dir(void) {
  const char *base = getenv("UOW_TEST_TMPDIR");
  if (!base || !*base)
    base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  snprintf(current_dir, sizeof(current_dir), "%s/uowtest.XXXXXX", base);
  if (!mkdtemp(current_dir)) {
    fprintf(stderr, "support: mkdtemp(%s): %s\n", current_dir, strerror(errno));
    current_dir[0] = '\0';
    return UOW_EIO;
  }
  return UOW_OK;
}

static int map_entities(uow_env *env) {
  for (size_t i = 0; i < NENTITIES; i++) {
    int rc = uow_env_map(env, test_entities[i], "main");
    if (rc) {
      fprintf(stderr, "support: map %s: %s\n", test_entities[i]->name, uow_env_errmsg(env));
      return rc;
    }
  }
  return UOW_OK;
}

/* Drop what an earlier test left (PostgreSQL keeps it; a fresh SQLite file has none). */
static int drop_tables(uow_env *env) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    fprintf(stderr, "support: begin: %s\n", uow_env_errmsg(env));
    return rc;
  }
  for (size_t i = 0; !rc && i < sizeof(test_tables) / sizeof(test_tables[0]); i++) {
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s%s", test_tables[i],
             test_on_sqlite() ? "" : " CASCADE");
    rc = uow_exec(unit, "main", sql, NULL, 0);
  }
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    fprintf(stderr, "support: dropping the test tables: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

int test_env_open(uow_env **out) {
  uow_env *env = NULL;
  *out = NULL;
  if (current_owner) {
    fprintf(stderr, "support: test_env_open: the previous environment is still open\n");
    return UOW_EMISUSE;
  }
  int rc = make_dir();
  if (rc)
    return rc;
  if (test_on_sqlite()) {
    snprintf(current_url, sizeof(current_url), "sqlite:%s/main.db", current_dir);
  } else {
    const char *pg = getenv("UOW_TEST_PG_URL");
    if (!pg || !*pg) {
      fprintf(stderr, "support: UOW_TEST_STORE=postgresql needs UOW_TEST_PG_URL\n");
      remove_dir(current_dir);
      current_dir[0] = '\0';
      return UOW_EINVAL;
    }
    snprintf(current_url, sizeof(current_url), "%s", pg);
  }
  if ((rc = uow_env_open(NULL, &env))) {
    fprintf(stderr, "support: uow_env_open: %s\n", uow_strerror(rc));
    goto fail;
  }
  if ((rc = uow_env_add_store(env, "main", current_url))) {
    fprintf(stderr, "support: add store: %s\n", uow_env_errmsg(env));
    goto fail;
  }
  if ((rc = drop_tables(env)) || (rc = map_entities(env)))
    goto fail;
  if ((rc = uow_env_create_schema(env))) {
    fprintf(stderr, "support: create schema: %s\n", uow_env_errmsg(env));
    goto fail;
  }
  /* After create_schema: the library makes uow_outbox with all of its columns. */
  if ((rc = uow_env_map(env, &outbox_event_entity, "main"))) {
    fprintf(stderr, "support: map outbox_event: %s\n", uow_env_errmsg(env));
    goto fail;
  }
  current_owner = env;
  remember(env, current_url);
  *out = env;
  return UOW_OK;
fail:
  uow_env_close(env);
  remove_dir(current_dir);
  current_dir[0] = '\0';
  return rc;
}

int test_env_open_second(const char *sqlite_query, uow_env **out) {
  uow_env *env = NULL;
  char url[sizeof(current_url) + 256];
  *out = NULL;
  if (!current_owner) {
    fprintf(stderr, "support: test_env_open_second needs test_env_open first\n");
    return UOW_EMISUSE;
  }
  snprintf(url, sizeof(url), "%s%s", current_url,
           test_on_sqlite() && sqlite_query ? sqlite_query : "");
  int rc = uow_env_open(NULL, &env);
  if (!rc && (rc = uow_env_add_store(env, "main", url)))
    fprintf(stderr, "support: add store: %s\n", uow_env_errmsg(env));
  if (!rc)
    rc = map_entities(env);
  if (!rc && (rc = uow_env_map(env, &outbox_event_entity, "main")))
    fprintf(stderr, "support: map outbox_event: %s\n", uow_env_errmsg(env));
  if (rc) {
    uow_env_close(env);
    return rc;
  }
  remember(env, current_url);
  *out = env;
  return UOW_OK;
}

void test_env_close(uow_env *env) {
  if (!env)
    return;
  forget(env);
  uow_env_close(env);
  if (env == current_owner) {
    current_owner = NULL;
    if (current_dir[0])
      remove_dir(current_dir);
    current_dir[0] = '\0';
    current_url[0] = '\0';
  }
}

/* ---- the oracle ---- */

/* One value read by the oracle. */
typedef struct oracle_value {
  bool is_null;
  char text[1024];
} oracle_value;

struct sqlite3 *test_sqlite_open(const char *url) {
  char path[2048];
  snprintf(path, sizeof(path), "%s", strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url);
  path[strcspn(path, "?")] = '\0';
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    fail_msg("cannot open %s: %s", path, msg);
  }
  sqlite3_busy_timeout(db, 10000);
  return db;
}

void test_sqlite_exec(const char *url, const char *sql) {
  sqlite3 *db = test_sqlite_open(url);
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    sqlite3_close(db);
    fail_msg("%s: %s", sql, msg);
  }
  sqlite3_close(db);
}

static void sqlite_query(const char *url, const char *sql, oracle_value *out) {
  sqlite3 *db = test_sqlite_open(url);
  sqlite3_stmt *stmt = NULL;
  int src = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_step(stmt);
  if (src != SQLITE_ROW) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", src == SQLITE_DONE ? "no row" : sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    fail_msg("oracle: %s: %s", sql, msg);
  }
  out->is_null = sqlite3_column_type(stmt, 0) == SQLITE_NULL;
  const unsigned char *text = sqlite3_column_text(stmt, 0);
  snprintf(out->text, sizeof(out->text), "%s", text ? (const char *)text : "");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

static void pg_query(const char *url, const char *sql, oracle_value *out) {
  PGconn *conn = PQconnectdb(url);
  if (PQstatus(conn) != CONNECTION_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    PQfinish(conn);
    fail_msg("oracle: cannot connect: %s", msg);
  }
  PGresult *res = PQexec(conn, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s",
             PQresultStatus(res) == PGRES_TUPLES_OK ? "no row" : PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
    fail_msg("oracle: %s: %s", sql, msg);
  }
  out->is_null = PQgetisnull(res, 0, 0);
  snprintf(out->text, sizeof(out->text), "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(conn);
}

/* Run `sql` on the database of a libuow URL; SQLite URL options are not the path's. */
static void oracle(const char *url, const char *sql, oracle_value *out) {
  if (strncmp(url, "sqlite:", 7) == 0) {
    sqlite_query(url, sql, out);
  } else {
    pg_query(url, sql, out);
  }
}

static int64_t to_int(const char *sql, const oracle_value *v) {
  if (v->is_null)
    fail_msg("oracle: %s: NULL where a number was expected", sql);
  char *end = NULL;
  errno = 0;
  long long n = strtoll(v->text, &end, 10);
  if (errno || end == v->text || *end)
    fail_msg("oracle: %s: '%s' is not an integer", sql, v->text);
  return (int64_t)n;
}

long test_count_at(const char *url, const char *table, const char *where) {
  char sql[2048];
  oracle_value v;
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s%s%s", table, where ? " WHERE " : "",
           where ? where : "");
  oracle(url, sql, &v);
  return (long)to_int(sql, &v);
}

long test_count(uow_env *env, const char *table, const char *where) {
  return test_count_at(url_of(env), table, where);
}

int64_t test_int(uow_env *env, const char *sql) {
  oracle_value v;
  oracle(url_of(env), sql, &v);
  return to_int(sql, &v);
}

bool test_text(uow_env *env, const char *sql, char *buf, size_t cap) {
  oracle_value v;
  oracle(url_of(env), sql, &v);
  snprintf(buf, cap, "%s", v.is_null ? "" : v.text);
  return !v.is_null;
}

/* ---- fixtures ---- */

int test_setup(void **state) {
  test_world *world = calloc(1, sizeof(*world));
  if (!world)
    return -1;
  if (test_env_open(&world->env)) {
    free(world);
    return -1;
  }
  *state = world;
  return 0;
}

int test_teardown(void **state) {
  test_world *world = *state;
  if (!world)
    return 0;
  test_env_close(world->other);
  test_env_close(world->env);
  free(world);
  *state = NULL;
  return 0;
}

uow_env *test_world_other(test_world *world, const char *sqlite_query) {
  if (!world->other) {
    int rc = test_env_open_second(sqlite_query, &world->other);
    if (rc)
      fail_msg("opening a second environment failed: %s", uow_strerror(rc));
  }
  return world->other;
}

/* ---- servers of a test's own ---- */

void test_server_script(const char *kind, const char *verb, const char *dir, const char *env_prefix,
                        char *out, size_t cap) {
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "%s bash '%s/scripts/%s-test-server.sh' %s '%s'%s", env_prefix,
           getenv("UOW_SOURCE_DIR"), kind, verb, dir, out ? "" : " >/dev/null");
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = out ? fread(out, 1, cap - 1, p) : 0;
  if (out) {
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
  }
  if (pclose(p) != 0)
    fail_msg("%s failed", cmd);
}
