/*
 * support.h - what the test suites share: the test entities, environments on
 * a fresh database of the store under test, and an oracle that reads the
 * database with the driver itself (libsqlite3 or libpq), not through libuow,
 * so that what a test checks does not depend on the code it tests.
 *
 * The store under test is named by UOW_TEST_STORE: `sqlite` (the default; a
 * fresh file in a fresh mkdtemp directory per environment) or `postgresql`
 * (the server at UOW_TEST_PG_URL; the test tables are dropped and created
 * again). Either way a fresh temporary directory exists for files a test
 * wants (extra SQLite stores); it is removed when the environment closes.
 *
 * Include after <stdarg.h>, <stddef.h>, <stdint.h>, <setjmp.h> and <cmocka.h>.
 */
#ifndef UOW_TEST_SUPPORT_H
#define UOW_TEST_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "uow.h"

/* ---- test entities (mapped to store "main" by test_env_open) ---- */

/* Table users: versioned, generated key, unique email. */
typedef struct user {
  int64_t id;
  char *email;
  char *name;
  double score;
  int64_t version;
} user;

/* Table profiles: like a user without a version column. */
typedef struct profile {
  int64_t id;
  char *email;
  double score;
} profile;

/* Table courses: versioned, generated key. */
typedef struct course {
  int64_t id;
  char *title;
  int64_t seats;
  int64_t version;
} course;

/* Table enrollments: course_id is a foreign key to courses; `course` is its parent pointer. */
typedef struct enrollment {
  int64_t id;
  int64_t course_id;
  char *learner;
  int64_t version;
  course *course;
} enrollment;

/* Table tags: a text primary key. */
typedef struct tag {
  char *name;
  char *label;
} tag;

/* Table notes: an explicit integer key and every other column type, several nullable. */
typedef struct note {
  int64_t id;
  char *body;   /* NULLABLE */
  int64_t rank; /* NULLABLE: 0 is stored as NULL */
  double weight;
  bool pinned;
  uow_blob data; /* NULLABLE */
} note;

/* Objects in Redis under "cards:<id>" (map card_entity to a Redis store): a
 * version column, as a store that cannot join a transaction needs. */
typedef struct card {
  int64_t id;
  char *title;
  double score;
  int64_t version;
} card;

/* The columns of the library's uow_outbox table that tests read (mapped read-only:
 * after uow_env_create_schema, so the library creates that table itself). */
typedef struct outbox_event {
  int64_t id;
  char *unit_id;
  int64_t seq;
  char *kind;
  char *topic;
  char *event_key;
  uow_blob payload;
} outbox_event;

extern const uow_entity user_entity;
extern const uow_entity profile_entity;
extern const uow_entity course_entity;
extern const uow_entity enrollment_entity;
extern const uow_entity tag_entity;
extern const uow_entity note_entity;
extern const uow_entity outbox_event_entity;
extern const uow_entity card_entity;

/* ---- the store under test ---- */

/* true when UOW_TEST_STORE is sqlite (or unset), false for postgresql. */
bool test_on_sqlite(void);
/* "sqlite" or "postgresql". */
const char *test_store_kind(void);

/* ---- environments ---- */

/*
 * Open an environment with store "main" on a fresh database (see above), the
 * test entities mapped and the schema created. Returns 0 or the failing
 * UOW_E* code (the message is printed). Close with test_env_close().
 */
int test_env_open(uow_env **env);

/*
 * Open another environment on the database of the last test_env_open(), with
 * the test entities mapped (no schema work). `sqlite_query` (may be NULL) is
 * appended to the URL on SQLite only, e.g. "?busy_timeout=50".
 */
int test_env_open_second(const char *sqlite_query, uow_env **env);

/* Close an environment from test_env_open*(); closing the first one also
 * removes its temporary directory. Accepts NULL. */
void test_env_close(uow_env *env);

/* The URL of store "main" of the current database, and its temporary directory. */
const char *test_url(void);
const char *test_dir(void);

/* ---- the oracle: direct driver reads (failures fail the test) ---- */

/* SELECT count(*) FROM table [WHERE where] on the env's store "main". */
long test_count(uow_env *env, const char *table, const char *where);
/* The same on the database of a libuow URL (sqlite:PATH or postgresql://...). */
long test_count_at(const char *url, const char *table, const char *where);
/* The first column of the first row of `sql` as an integer (SQL NULL: the test fails). */
int64_t test_int(uow_env *env, const char *sql);
/* The first column of the first row as text into buf; false when it is SQL NULL. */
bool test_text(uow_env *env, const char *sql, char *buf, size_t cap);
/* The SQLite database of `url` (sqlite:PATH[?options]) opened read-write with
 * a 10 s busy timeout; close it with sqlite3_close. Failing to open fails the test. */
struct sqlite3 *test_sqlite_open(const char *url);
/* Run `sql` (one or more statements) on the SQLite database of `url`; a
 * failure fails the test. */
void test_sqlite_exec(const char *url, const char *sql);

/* ---- servers of a test's own ---- */

/* Run scripts/<kind>-test-server.sh VERB DIR (kind "pg" or "redis") with
 * `env_prefix` (e.g. "PG_MAX_PREPARED=0", or "") before it; the first line of
 * its output goes to `out` when not NULL. Fails the test if the script fails. */
void test_server_script(const char *kind, const char *verb, const char *dir, const char *env_prefix,
                        char *out, size_t cap);

/* ---- cmocka fixtures: a world with one environment ---- */

typedef struct test_world {
  uow_env *env;   /* test_env_open() */
  uow_env *other; /* test_world_other(), or NULL */
} test_world;

int test_setup(void **state);
int test_teardown(void **state);
/* The world's second environment, opened on first use (see test_env_open_second). */
uow_env *test_world_other(test_world *world, const char *sqlite_query);

/* ---- assertions with the library's message ---- */

/* Fail unless `call` (on unit `u`) returns 0; the message has uow_errmsg(u). */
#define UOK(u, call)                                                                               \
  do {                                                                                             \
    int uok_rc_ = (call);                                                                          \
    if (uok_rc_ != 0)                                                                              \
      fail_msg("%s returned %d (%s): %s", #call, uok_rc_, uow_strerror(uok_rc_), uow_errmsg(u));   \
  } while (0)

/* Fail unless `call` returns `code`; the message has uow_errmsg(u). */
#define UCODE(u, code, call)                                                                       \
  do {                                                                                             \
    int ucode_rc_ = (call);                                                                        \
    if (ucode_rc_ != (code))                                                                       \
      fail_msg("%s returned %d (%s), expected %s: %s", #call, ucode_rc_, uow_strerror(ucode_rc_),  \
               #code, uow_errmsg(u));                                                              \
  } while (0)

/* The same for calls whose message lives on an environment. */
#define EOK(env, call)                                                                             \
  do {                                                                                             \
    int eok_rc_ = (call);                                                                          \
    if (eok_rc_ != 0)                                                                              \
      fail_msg("%s returned %d (%s): %s", #call, eok_rc_, uow_strerror(eok_rc_),                   \
               uow_env_errmsg(env));                                                               \
  } while (0)

/* Fail unless `haystack` contains `needle`. */
#define assert_contains(haystack, needle)                                                          \
  do {                                                                                             \
    const char *ac_h_ = (haystack), *ac_n_ = (needle);                                             \
    if (!ac_h_ || !strstr(ac_h_, ac_n_))                                                           \
      fail_msg("\"%s\" does not contain \"%s\"", ac_h_ ? ac_h_ : "(null)", ac_n_);                 \
  } while (0)

#endif /* UOW_TEST_SUPPORT_H */
