/*
 * test_misuse.c - the misuse matrix: every public function (include/uow.h and
 * the two of include/uow/store.h) called with NULL for each pointer, units in
 * every state where a verb is refused, objects of another unit, set-up calls
 * out of order, bad identifiers and descriptors, values a store cannot hold,
 * huge values and negative counts. Each refusal must be a clear UOW_E* code,
 * with a message on the handle when there is one, and must write nothing: the
 * tests count rows with the oracle (support.c) after the refused calls.
 *
 * And the security promises: identifiers are checked at uow_env_map, values
 * are always bound, files the library creates are 0600 whatever the umask,
 * and passwords in URLs never reach a message or the outbox's last_error.
 *
 * Tables of calls keep the matrix readable: a row names the function, its
 * arguments, the code the documentation promises and a fragment of the
 * message. matrix_covers_every_public_function checks that every function
 * declared in include/uow.h has a row, so a new function needs one too.
 *
 * Run against SQLite (default) or PostgreSQL with UOW_TEST_STORE; the
 * PostgreSQL-only test is skipped on SQLite.
 *
 *   test_misuse [cmocka-filter]
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"
#include "uow/store.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

/* Fail if `haystack` contains `needle`. */
#define assert_lacks(haystack, needle)                                                             \
  do {                                                                                             \
    const char *al_h_ = (haystack), *al_n_ = (needle);                                             \
    if (al_h_ && strstr(al_h_, al_n_))                                                             \
      fail_msg("\"%s\" contains \"%s\"", al_h_, al_n_);                                            \
  } while (0)

static uow_unit *begin(uow_env *env) {
  uow_unit *unit = NULL;
  EOK(env, uow_begin(env, &unit));
  assert_non_null(unit);
  return unit;
}

static char *copy_text(uow_unit *unit, const char *s) {
  char *copy = uow_strdup(unit, s);
  if (!copy)
    fail_msg("uow_strdup failed: %s", uow_errmsg(unit));
  return copy;
}

static user *new_user(uow_unit *unit, const char *email) {
  user *u = NULL;
  UOK(unit, uow_new(unit, &user_entity, (void **)&u));
  u->email = copy_text(unit, email);
  u->name = copy_text(unit, "Name");
  return u;
}

/* A committed user; returns its id. */
static int64_t seed_user(uow_env *env, const char *email) {
  uow_unit *unit = begin(env);
  user *u = new_user(unit, email);
  UOK(unit, uow_commit(unit));
  int64_t id = u->id;
  uow_end(unit);
  return id;
}

/* The database holds `users` users and no event: whatever was refused wrote nothing. */
static void assert_written(uow_env *env, long users) {
  assert_int_equal(test_count(env, "users", NULL), users);
  assert_int_equal(test_count(env, "uow_outbox", NULL), 0);
}

/* Tables in the database of store "main" (the oracle reads the catalog). */
static long table_count(uow_env *env) {
  return test_on_sqlite()
             ? test_count(env, "sqlite_master", "type = 'table'")
             : test_count(env, "information_schema.tables", "table_schema = current_schema()");
}

/* A sink that takes every event. */
static int take_all(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                    size_t errcap) {
  (void)events;
  (void)err;
  (void)errcap;
  *(size_t *)ctx += n;
  *delivered = n;
  return UOW_OK;
}

static int stop_after_one_pass(void *arg, const uow_relay_stats *stats) {
  (void)arg;
  (void)stats;
  return 1;
}

static int body_that_writes_nothing(uow_unit *unit, void *arg) {
  (void)unit;
  (void)arg;
  return 0;
}

static void hook_that_counts(void *arg) {
  if (arg)
    (*(int *)arg)++;
}

/* A store type for uow_register_store's refusals; it is never registered. */
static int fake_open(const char *url, const uow_store_config *cfg, uow_store_driver **out,
                     uow_status *st) {
  (void)url;
  (void)cfg;
  *out = NULL;
  return uow_status_set(st, UOW_EIO, "fake");
}

static int fake_connect(uow_store_driver *drv, uow_store_conn **out, uow_status *st) {
  (void)drv;
  *out = NULL;
  return uow_status_set(st, UOW_EIO, "fake");
}

/* ---- the call tables ---- */

/*
 * What a row's call gets: the test's environment, a unit begun on it (NULL
 * for the rows of functions without a unit), an object that unit loaded, and
 * a sink. `pointer` carries what a function returning a pointer returned.
 */
typedef struct fixture {
  uow_env *env;
  uow_unit *unit;
  user *object;
  int64_t id;
  size_t taken;
  uow_sink sink;
} fixture;

typedef struct call {
  const char *function; /* the public function the row calls */
  const char *args;     /* how it is called, for failure messages */
  int expected;         /* the documented code */
  const char *message;  /* a fragment of the handle's message, or NULL when none is left */
  int (*run)(fixture *f);
} call;

/* Run each row; `on_unit`: messages are uow_errmsg(f->unit), else uow_env_errmsg(f->env). */
static void run_calls(fixture *f, const call *calls, size_t n, bool on_unit) {
  for (size_t i = 0; i < n; i++) {
    const call *c = &calls[i];
    int rc = c->run(f);
    const char *msg = on_unit ? uow_errmsg(f->unit) : uow_env_errmsg(f->env);
    if (rc != c->expected)
      fail_msg("%s(%s) returned %d (%s), expected %d (%s): %s", c->function, c->args, rc,
               uow_strerror(rc), c->expected, uow_strerror(c->expected), msg);
    if (c->message && !strstr(msg, c->message))
      fail_msg("%s(%s): the message \"%s\" does not say \"%s\"", c->function, c->args, msg,
               c->message);
  }
}

/* ---- NULL handles: every function with a handle refuses NULL with UOW_EINVAL ---- */

static int null_env_open(fixture *f) {
  (void)f;
  uow_env_options opts = UOW_ENV_OPTIONS_INIT;
  return uow_env_open(&opts, NULL);
}
static int null_add_store(fixture *f) {
  (void)f;
  return uow_env_add_store(NULL, "main", "sqlite::memory:");
}
static int null_map(fixture *f) {
  (void)f;
  return uow_env_map(NULL, &user_entity, "main");
}
static int null_create_schema(fixture *f) {
  (void)f;
  return uow_env_create_schema(NULL);
}
static int null_recover(fixture *f) {
  (void)f;
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  return uow_recover(NULL, &report);
}
static int null_status(fixture *f) {
  (void)f;
  size_t count = 99;
  uow_store_status out[1];
  int rc = uow_env_status(NULL, out, 1, &count);
  assert_int_equal(count, 99);
  return rc;
}
static int null_begin(fixture *f) {
  (void)f;
  uow_unit *unit = (uow_unit *)&unit; /* not NULL: the call must clear it */
  int rc = uow_begin(NULL, &unit);
  assert_null(unit);
  return rc;
}
static int null_begin_ex(fixture *f) {
  (void)f;
  uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
  uow_unit *unit = (uow_unit *)&unit;
  int rc = uow_begin_ex(NULL, &opts, &unit);
  assert_null(unit);
  return rc;
}
static int null_get(fixture *f) {
  void *out = f;
  int rc = uow_get(NULL, &user_entity, &f->id, &out);
  assert_null(out);
  return rc;
}
static int null_get_ex(fixture *f) {
  void *out = f;
  int rc = uow_get_ex(NULL, &user_entity, &f->id, UOW_FOR_UPDATE, &out);
  assert_null(out);
  return rc;
}
static int null_find(fixture *f) {
  (void)f;
  void **rows = (void **)&rows;
  size_t count = 99;
  int rc = uow_find(NULL, &user_entity, NULL, NULL, 0, &rows, &count);
  assert_null(rows);
  assert_int_equal(count, 0);
  return rc;
}
static int null_find_ex(fixture *f) {
  (void)f;
  void **rows = NULL;
  size_t count = 0;
  return uow_find_ex(NULL, &user_entity, NULL, NULL, 0, UOW_FOR_UPDATE, &rows, &count);
}
static int null_fetch(fixture *f) {
  void *out = f;
  uow_fetch_item item = uow_fetch_get(&user_entity, &f->id, 0, &out);
  return uow_fetch(NULL, &item, 1);
}
static int null_new(fixture *f) {
  void *out = f;
  int rc = uow_new(NULL, &user_entity, &out);
  assert_null(out);
  return rc;
}
static int null_delete(fixture *f) { return uow_delete(NULL, f->object); }
static int null_flush(fixture *f) {
  (void)f;
  return uow_flush(NULL);
}
static int null_send(fixture *f) {
  (void)f;
  return uow_send(NULL);
}
static int null_exec(fixture *f) {
  (void)f;
  return uow_exec(NULL, "main", "DELETE FROM users", NULL, 0);
}
static int null_exec_ex(fixture *f) {
  (void)f;
  int64_t affected = 0;
  return uow_exec_ex(NULL, "main", "DELETE FROM users", NULL, 0, &affected);
}
static int null_emit(fixture *f) {
  (void)f;
  return uow_emit(NULL, "topic", "key", "p", 1);
}
static int null_on_commit(fixture *f) {
  (void)f;
  return uow_on_commit(NULL, hook_that_counts, NULL);
}
static int null_savepoint(fixture *f) {
  (void)f;
  return uow_savepoint(NULL);
}
static int null_release(fixture *f) {
  (void)f;
  return uow_release(NULL);
}
static int null_rollback_to(fixture *f) {
  (void)f;
  return uow_rollback_to(NULL);
}
static int null_commit(fixture *f) {
  (void)f;
  return uow_commit(NULL);
}
static int null_rollback(fixture *f) {
  (void)f;
  return uow_rollback(NULL);
}
static int null_run(fixture *f) {
  (void)f;
  return uow_run(NULL, body_that_writes_nothing, NULL, NULL);
}
static int null_sink_redis_stream(fixture *f) {
  (void)f;
  return uow_sink_redis_stream("redis://127.0.0.1:6379/0", "events", NULL);
}
static int null_sink_command(fixture *f) {
  (void)f;
  return uow_sink_command("cat", NULL);
}
static int null_relay_once(fixture *f) { return uow_relay_once(NULL, &f->sink, NULL, NULL); }
static int null_relay_run(fixture *f) {
  static const volatile int stop = 1;
  return uow_relay_run(NULL, &f->sink, NULL, &stop, NULL, NULL);
}
static int null_requeue(fixture *f) {
  (void)f;
  uint64_t count = 0;
  return uow_outbox_requeue(NULL, "main", &count);
}
static int null_register_store(fixture *f) {
  (void)f;
  return uow_register_store(NULL);
}
static int null_status_set(fixture *f) {
  (void)f;
  return uow_status_set(NULL, UOW_EINVAL, "no status to set: %d", 1);
}

/* Functions with a handle parameter, called with NULL there (and valid arguments
 * elsewhere). No handle, so no message is left (docs/errors.md). */
static const call null_handle_calls[] = {
    {"uow_env_open", "opts, NULL out", UOW_EINVAL, NULL, null_env_open},
    {"uow_env_add_store", "NULL env", UOW_EINVAL, NULL, null_add_store},
    {"uow_env_map", "NULL env", UOW_EINVAL, NULL, null_map},
    {"uow_env_create_schema", "NULL env", UOW_EINVAL, NULL, null_create_schema},
    {"uow_recover", "NULL env", UOW_EINVAL, NULL, null_recover},
    {"uow_env_status", "NULL env", UOW_EINVAL, NULL, null_status},
    {"uow_begin", "NULL env", UOW_EINVAL, NULL, null_begin},
    {"uow_begin_ex", "NULL env", UOW_EINVAL, NULL, null_begin_ex},
    {"uow_get", "NULL unit", UOW_EINVAL, NULL, null_get},
    {"uow_get_ex", "NULL unit", UOW_EINVAL, NULL, null_get_ex},
    {"uow_find", "NULL unit", UOW_EINVAL, NULL, null_find},
    {"uow_find_ex", "NULL unit", UOW_EINVAL, NULL, null_find_ex},
    {"uow_fetch", "NULL unit", UOW_EINVAL, NULL, null_fetch},
    {"uow_new", "NULL unit", UOW_EINVAL, NULL, null_new},
    {"uow_delete", "NULL unit", UOW_EINVAL, NULL, null_delete},
    {"uow_flush", "NULL unit", UOW_EINVAL, NULL, null_flush},
    {"uow_send", "NULL unit", UOW_EINVAL, NULL, null_send},
    {"uow_exec", "NULL unit", UOW_EINVAL, NULL, null_exec},
    {"uow_exec_ex", "NULL unit", UOW_EINVAL, NULL, null_exec_ex},
    {"uow_emit", "NULL unit", UOW_EINVAL, NULL, null_emit},
    {"uow_on_commit", "NULL unit", UOW_EINVAL, NULL, null_on_commit},
    {"uow_savepoint", "NULL unit", UOW_EINVAL, NULL, null_savepoint},
    {"uow_release", "NULL unit", UOW_EINVAL, NULL, null_release},
    {"uow_rollback_to", "NULL unit", UOW_EINVAL, NULL, null_rollback_to},
    {"uow_commit", "NULL unit", UOW_EINVAL, NULL, null_commit},
    {"uow_rollback", "NULL unit", UOW_EINVAL, NULL, null_rollback},
    {"uow_run", "NULL env", UOW_EINVAL, NULL, null_run},
    {"uow_sink_redis_stream", "url, stream, NULL out", UOW_EINVAL, NULL, null_sink_redis_stream},
    {"uow_sink_command", "command, NULL out", UOW_EINVAL, NULL, null_sink_command},
    {"uow_relay_once", "NULL env", UOW_EINVAL, NULL, null_relay_once},
    {"uow_relay_run", "NULL env", UOW_EINVAL, NULL, null_relay_run},
    {"uow_outbox_requeue", "NULL env", UOW_EINVAL, NULL, null_requeue},
    {"uow_register_store", "NULL ops", UOW_EINVAL, NULL, null_register_store},
    {"uow_status_set", "NULL status", UOW_EINVAL, NULL, null_status_set},
};

/* ---- NULL handles where the documentation allows them: no-ops ---- */

static int close_null_env(fixture *f) {
  (void)f;
  uow_env_close(NULL);
  return UOW_OK;
}
static int end_null_unit(fixture *f) {
  (void)f;
  uow_end(NULL);
  return UOW_OK;
}
static int close_null_sink(fixture *f) {
  (void)f;
  uow_sink_close(NULL);
  uow_sink zeroed;
  memset(&zeroed, 0, sizeof(zeroed));
  uow_sink_close(&zeroed); /* a sink a failed constructor cleared */
  return UOW_OK;
}
static int errmsg_of_null_unit(fixture *f) {
  (void)f;
  assert_string_equal(uow_errmsg(NULL), "no unit (NULL)");
  return UOW_OK;
}
static int errmsg_of_null_env(fixture *f) {
  (void)f;
  assert_string_equal(uow_env_errmsg(NULL), "no environment (NULL)");
  return UOW_OK;
}
static int env_of_null_unit(fixture *f) {
  (void)f;
  assert_null(uow_unit_env(NULL));
  return UOW_OK;
}
static int strdup_on_null_unit(fixture *f) {
  (void)f;
  assert_null(uow_strdup(NULL, "text"));
  return UOW_OK;
}
static int blobdup_on_null_unit(fixture *f) {
  (void)f;
  uow_blob blob = uow_blobdup(NULL, "bytes", 5);
  assert_null(blob.data);
  assert_int_equal(blob.size, 0);
  return UOW_OK;
}
static int strerror_of_any_code(fixture *f) {
  (void)f;
  static const int codes[] = {UOW_OK,          UOW_ENOTFOUND, UOW_ECONFLICT,
                              UOW_ECONSTRAINT, UOW_EMISUSE,   UOW_EINVAL,
                              UOW_ENOMEM,      UOW_EIO,       UOW_EINDOUBT};
  for (size_t i = 0; i < COUNT(codes); i++) {
    assert_non_null(uow_strerror(codes[i]));
    assert_string_not_equal(uow_strerror(codes[i]), "unknown error");
  }
  assert_string_equal(uow_strerror(INT_MIN), "unknown error");
  assert_string_equal(uow_strerror(-9), "unknown error");
  assert_string_equal(uow_strerror(1), "unknown error");
  return UOW_OK;
}
static int value_helpers_take_null_as_sql_null(fixture *f) {
  (void)f;
  assert_true(uow_text(NULL).is_null);
  assert_true(uow_blob_value(NULL, 5).is_null);
  assert_true(uow_null().is_null);
  /* The number helpers have no pointer to refuse: check they are not NULL. */
  assert_false(uow_int64(0).is_null);
  assert_false(uow_double(0).is_null);
  assert_false(uow_bool(false).is_null);
  /* uow_text measures up to the NUL; an empty string is not NULL. */
  assert_false(uow_text("").is_null);
  assert_int_equal(uow_text("ab\0cd").v.bytes.size, 2);
  return UOW_OK;
}
/* uow_column_value: SQL NULL for a NULL column or object; otherwise the
 * member as the core reads it (a nullable 0 is NULL, text by its NUL). */
static int column_value_of_null_is_sql_null(fixture *f) {
  (void)f;
  const uow_column *cols = note_entity.columns;
  note n = {.id = 7, .body = "ab", .rank = 0, .weight = 0.0};
  assert_true(uow_column_value(NULL, &n).is_null);
  assert_true(uow_column_value(&cols[0], NULL).is_null);
  uow_value id = uow_column_value(&cols[0], &n);
  assert_false(id.is_null);
  assert_int_equal(id.v.i, 7);
  assert_int_equal(uow_column_value(&cols[1], &n).v.bytes.size, 2);
  assert_true(uow_column_value(&cols[2], &n).is_null);  /* nullable rank 0 */
  assert_false(uow_column_value(&cols[3], &n).is_null); /* weight 0.0, not nullable */
  assert_true(uow_column_value(&cols[5], &n).is_null);  /* no blob */
  return UOW_OK;
}
static int allocator_restored_by_three_nulls(fixture *f) {
  (void)f;
  return uow_set_allocator(NULL, NULL, NULL);
}

static const call null_accepted_calls[] = {
    {"uow_env_close", "NULL", UOW_OK, NULL, close_null_env},
    {"uow_end", "NULL", UOW_OK, NULL, end_null_unit},
    {"uow_sink_close", "NULL, then a cleared sink", UOW_OK, NULL, close_null_sink},
    {"uow_errmsg", "NULL", UOW_OK, NULL, errmsg_of_null_unit},
    {"uow_env_errmsg", "NULL", UOW_OK, NULL, errmsg_of_null_env},
    {"uow_unit_env", "NULL", UOW_OK, NULL, env_of_null_unit},
    {"uow_strdup", "NULL unit", UOW_OK, NULL, strdup_on_null_unit},
    {"uow_blobdup", "NULL unit", UOW_OK, NULL, blobdup_on_null_unit},
    {"uow_strerror", "every code, and others", UOW_OK, NULL, strerror_of_any_code},
    {"uow_text", "NULL", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_blob_value", "NULL, 5", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_null", "", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_int64", "0", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_double", "0", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_bool", "false", UOW_OK, NULL, value_helpers_take_null_as_sql_null},
    {"uow_set_allocator", "NULL, NULL, NULL", UOW_OK, NULL, allocator_restored_by_three_nulls},
    {"uow_column_value", "NULL column or object", UOW_OK, NULL, column_value_of_null_is_sql_null},
};

/* ---- NULL for each other pointer, with valid handles: environment calls ---- */

static int env_open_null_opts(fixture *f) {
  (void)f;
  uow_env *env = NULL;
  int rc = uow_env_open(NULL, &env);
  assert_non_null(env);
  uow_env_close(env);
  return rc;
}
static int add_store_null_name(fixture *f) {
  return uow_env_add_store(f->env, NULL, "sqlite::memory:");
}
static int add_store_null_url(fixture *f) { return uow_env_add_store(f->env, "other", NULL); }
static int map_null_entity(fixture *f) { return uow_env_map(f->env, NULL, "main"); }
static int map_null_store(fixture *f) { return uow_env_map(f->env, &tag_entity, NULL); }
static int recover_null_report(fixture *f) { return uow_recover(f->env, NULL); }
static int status_null_out_no_room(fixture *f) {
  size_t count = 0;
  int rc = uow_env_status(f->env, NULL, 0, &count);
  assert_int_equal(count, 1);
  return rc;
}
static int status_null_out_with_room(fixture *f) {
  size_t count = 0;
  return uow_env_status(f->env, NULL, 1, &count);
}
static int status_null_count(fixture *f) {
  uow_store_status out[1];
  return uow_env_status(f->env, out, 1, NULL);
}
static int begin_null_out(fixture *f) { return uow_begin(f->env, NULL); }
static int begin_ex_null_opts(fixture *f) {
  uow_unit *unit = NULL;
  int rc = uow_begin_ex(f->env, NULL, &unit);
  assert_non_null(unit);
  uow_end(unit);
  return rc;
}
static int begin_ex_null_out(fixture *f) {
  uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
  return uow_begin_ex(f->env, &opts, NULL);
}
static int run_null_fn(fixture *f) { return uow_run(f->env, NULL, NULL, NULL); }
static int run_null_arg_and_opts(fixture *f) {
  return uow_run(f->env, body_that_writes_nothing, NULL, NULL);
}
static int redis_stream_null_url(fixture *f) {
  (void)f;
  uow_sink sink;
  int rc = uow_sink_redis_stream(NULL, "events", &sink);
  assert_null(sink.deliver);
  return rc;
}
static int redis_stream_null_stream(fixture *f) {
  (void)f;
  uow_sink sink;
  int rc = uow_sink_redis_stream("redis://127.0.0.1:6379/0", NULL, &sink);
  assert_null(sink.deliver);
  return rc;
}
static int command_null_command(fixture *f) {
  (void)f;
  uow_sink sink;
  int rc = uow_sink_command(NULL, &sink);
  assert_null(sink.deliver);
  return rc;
}
static int relay_once_null_sink(fixture *f) { return uow_relay_once(f->env, NULL, NULL, NULL); }
static int relay_once_null_opts_and_stats(fixture *f) {
  return uow_relay_once(f->env, &f->sink, NULL, NULL);
}
static int relay_run_null_sink(fixture *f) {
  static const volatile int stop = 1;
  return uow_relay_run(f->env, NULL, NULL, &stop, NULL, NULL);
}
static int relay_run_null_stop_and_progress(fixture *f) {
  return uow_relay_run(f->env, &f->sink, NULL, NULL, NULL, NULL);
}
static int relay_run_null_stop(fixture *f) {
  return uow_relay_run(f->env, &f->sink, NULL, NULL, stop_after_one_pass, NULL);
}
static int requeue_null_store_and_count(fixture *f) {
  return uow_outbox_requeue(f->env, NULL, NULL);
}
static int allocator_without_realloc(fixture *f) {
  (void)f;
  return uow_set_allocator(malloc, NULL, free);
}
static int allocator_without_malloc(fixture *f) {
  (void)f;
  return uow_set_allocator(NULL, realloc, free);
}
static int allocator_without_free(fixture *f) {
  (void)f;
  return uow_set_allocator(malloc, realloc, NULL);
}

static const call env_argument_calls[] = {
    {"uow_env_open", "NULL opts", UOW_OK, NULL, env_open_null_opts},
    {"uow_env_add_store", "NULL name", UOW_EINVAL, "the name must be", add_store_null_name},
    {"uow_env_add_store", "NULL url", UOW_EINVAL, "no URL", add_store_null_url},
    {"uow_env_map", "NULL entity", UOW_EINVAL, "no entity", map_null_entity},
    {"uow_env_map", "NULL store", UOW_EINVAL, "no store named '(null)'", map_null_store},
    {"uow_recover", "NULL report", UOW_OK, NULL, recover_null_report},
    {"uow_env_status", "NULL out, cap 0", UOW_OK, NULL, status_null_out_no_room},
    {"uow_env_status", "NULL out, cap 1", UOW_EINVAL, NULL, status_null_out_with_room},
    {"uow_env_status", "NULL count", UOW_EINVAL, NULL, status_null_count},
    {"uow_begin", "NULL out", UOW_EINVAL, NULL, begin_null_out},
    {"uow_begin_ex", "NULL opts", UOW_OK, NULL, begin_ex_null_opts},
    {"uow_begin_ex", "NULL out", UOW_EINVAL, NULL, begin_ex_null_out},
    {"uow_run", "NULL fn", UOW_EINVAL, "no function", run_null_fn},
    {"uow_run", "NULL arg and opts", UOW_OK, NULL, run_null_arg_and_opts},
    {"uow_sink_redis_stream", "NULL url", UOW_EINVAL, NULL, redis_stream_null_url},
    {"uow_sink_redis_stream", "NULL stream", UOW_EINVAL, NULL, redis_stream_null_stream},
    {"uow_sink_command", "NULL command", UOW_EINVAL, NULL, command_null_command},
    {"uow_relay_once", "NULL sink", UOW_EINVAL, "no sink", relay_once_null_sink},
    {"uow_relay_once", "NULL opts and stats", UOW_OK, NULL, relay_once_null_opts_and_stats},
    {"uow_relay_run", "NULL sink", UOW_EINVAL, "no sink", relay_run_null_sink},
    {"uow_relay_run", "NULL stop and progress", UOW_EINVAL, "nothing can stop it",
     relay_run_null_stop_and_progress},
    {"uow_relay_run", "NULL stop", UOW_OK, NULL, relay_run_null_stop},
    {"uow_outbox_requeue", "NULL store and count", UOW_OK, NULL, requeue_null_store_and_count},
    {"uow_set_allocator", "NULL realloc", UOW_EINVAL, NULL, allocator_without_realloc},
    {"uow_set_allocator", "NULL malloc", UOW_EINVAL, NULL, allocator_without_malloc},
    {"uow_set_allocator", "NULL free", UOW_EINVAL, NULL, allocator_without_free},
};

/* ---- NULL for each other pointer, with valid handles: unit calls ---- */

static int get_null_entity(fixture *f) {
  void *out = f;
  int rc = uow_get(f->unit, NULL, &f->id, &out);
  assert_null(out);
  return rc;
}
static int get_null_key(fixture *f) {
  void *out = NULL;
  return uow_get(f->unit, &user_entity, NULL, &out);
}
static int get_null_out(fixture *f) { return uow_get(f->unit, &user_entity, &f->id, NULL); }
static int get_null_text_key(fixture *f) {
  const char *name = NULL; /* points to a NULL char *: a NULL key */
  void *out = NULL;
  return uow_get(f->unit, &tag_entity, &name, &out);
}
static int get_ex_null_entity(fixture *f) {
  void *out = NULL;
  return uow_get_ex(f->unit, NULL, &f->id, 0, &out);
}
static int get_ex_null_key(fixture *f) {
  void *out = NULL;
  return uow_get_ex(f->unit, &user_entity, NULL, 0, &out);
}
static int get_ex_null_out(fixture *f) {
  return uow_get_ex(f->unit, &user_entity, &f->id, 0, NULL);
}
static int find_null_entity(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find(f->unit, NULL, NULL, NULL, 0, &rows, &count);
}
static int find_null_where(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  int rc = uow_find(f->unit, &user_entity, NULL, NULL, 0, &rows, &count);
  assert_int_equal(count, 1); /* every row */
  return rc;
}
static int find_null_params(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find(f->unit, &user_entity, "id = ?", NULL, 1, &rows, &count);
}
static int find_null_rows(fixture *f) {
  size_t count = 0;
  return uow_find(f->unit, &user_entity, NULL, NULL, 0, NULL, &count);
}
static int find_null_count(fixture *f) {
  void **rows = NULL;
  return uow_find(f->unit, &user_entity, NULL, NULL, 0, &rows, NULL);
}
static int find_ex_null_entity(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find_ex(f->unit, NULL, NULL, NULL, 0, 0, &rows, &count);
}
static int find_ex_null_params(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find_ex(f->unit, &user_entity, "id = ?", NULL, 1, 0, &rows, &count);
}
static int find_ex_null_rows_and_count(fixture *f) {
  return uow_find_ex(f->unit, &user_entity, NULL, NULL, 0, 0, NULL, NULL);
}
static int fetch_null_items(fixture *f) { return uow_fetch(f->unit, NULL, 1); }
static int fetch_no_items(fixture *f) {
  void *out = NULL;
  uow_fetch_item item = uow_fetch_get(&user_entity, &f->id, 0, &out);
  return uow_fetch(f->unit, &item, 0);
}
static int fetch_get_null_entity(fixture *f) {
  void *out = f;
  uow_fetch_item item = uow_fetch_get(NULL, &f->id, 0, &out);
  int rc = uow_fetch(f->unit, &item, 1);
  assert_null(out);
  return rc;
}
static int fetch_get_null_out(fixture *f) {
  uow_fetch_item item = uow_fetch_get(&user_entity, &f->id, 0, NULL);
  return uow_fetch(f->unit, &item, 1);
}
static int fetch_get_null_key(fixture *f) {
  void *out = NULL; /* without a key it is a find, which has no rows pointer */
  uow_fetch_item item = uow_fetch_get(&user_entity, NULL, 0, &out);
  return uow_fetch(f->unit, &item, 1);
}
static int fetch_find_null_where(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  uow_fetch_item item = uow_fetch_find(&user_entity, NULL, NULL, 0, 0, &rows, &count);
  int rc = uow_fetch(f->unit, &item, 1);
  assert_int_equal(count, 1);
  return rc;
}
static int fetch_find_null_params(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  uow_fetch_item item = uow_fetch_find(&user_entity, "id = ?", NULL, 1, 0, &rows, &count);
  return uow_fetch(f->unit, &item, 1);
}
static int fetch_find_null_rows_and_count(fixture *f) {
  uow_fetch_item item = uow_fetch_find(&user_entity, NULL, NULL, 0, 0, NULL, NULL);
  return uow_fetch(f->unit, &item, 1);
}
static int new_null_entity(fixture *f) {
  void *out = f;
  int rc = uow_new(f->unit, NULL, &out);
  assert_null(out);
  return rc;
}
static int new_null_out(fixture *f) { return uow_new(f->unit, &user_entity, NULL); }
static int delete_null_object(fixture *f) { return uow_delete(f->unit, NULL); }
static int exec_null_store(fixture *f) {
  return uow_exec(f->unit, NULL, "DELETE FROM users", NULL, 0);
}
static int exec_null_sql(fixture *f) { return uow_exec(f->unit, "main", NULL, NULL, 0); }
static int exec_null_params(fixture *f) {
  return uow_exec(f->unit, "main", "DELETE FROM users WHERE id = ?", NULL, 1);
}
static int exec_ex_null_store(fixture *f) {
  int64_t affected = 0;
  return uow_exec_ex(f->unit, NULL, "DELETE FROM users", NULL, 0, &affected);
}
static int exec_ex_null_affected(fixture *f) {
  return uow_exec_ex(f->unit, "main", "UPDATE users SET score = score WHERE id = 0", NULL, 0, NULL);
}
static int emit_null_topic(fixture *f) { return uow_emit(f->unit, NULL, "key", "p", 1); }
static int emit_null_payload_with_len(fixture *f) {
  return uow_emit(f->unit, "topic", "key", NULL, 3);
}
static int emit_null_key_and_payload(fixture *f) {
  return uow_emit(f->unit, "topic", NULL, NULL, 0);
}
static int on_commit_null_fn(fixture *f) { return uow_on_commit(f->unit, NULL, f); }
static int on_commit_null_arg(fixture *f) { return uow_on_commit(f->unit, hook_that_counts, NULL); }
static int strdup_null_string(fixture *f) {
  if (uow_strdup(f->unit, NULL))
    fail_msg("uow_strdup(unit, NULL) returned a string");
  return UOW_OK;
}
static int blobdup_null_data(fixture *f) {
  uow_blob blob = uow_blobdup(f->unit, NULL, 5);
  assert_null(blob.data);
  assert_int_equal(blob.size, 0);
  return UOW_EINVAL; /* what its message says */
}
static int blobdup_null_data_empty(fixture *f) {
  uow_blob blob = uow_blobdup(f->unit, NULL, 0);
  assert_non_null(blob.data); /* an empty blob, not SQL NULL */
  assert_int_equal(blob.size, 0);
  return UOW_OK;
}
static int errmsg_and_env_of_a_unit(fixture *f) {
  assert_non_null(uow_errmsg(f->unit));
  assert_ptr_equal(uow_unit_env(f->unit), f->env);
  return UOW_OK;
}

static const call unit_argument_calls[] = {
    {"uow_get", "NULL entity", UOW_EINVAL, "is not mapped", get_null_entity},
    {"uow_get", "NULL key", UOW_EINVAL, "key and out are required", get_null_key},
    {"uow_get", "NULL out", UOW_EINVAL, "key and out are required", get_null_out},
    {"uow_get", "a text key that is NULL", UOW_EINVAL, "the key is NULL", get_null_text_key},
    {"uow_get_ex", "NULL entity", UOW_EINVAL, "is not mapped", get_ex_null_entity},
    {"uow_get_ex", "NULL key", UOW_EINVAL, "key and out are required", get_ex_null_key},
    {"uow_get_ex", "NULL out", UOW_EINVAL, "key and out are required", get_ex_null_out},
    {"uow_find", "NULL entity", UOW_EINVAL, "is not mapped", find_null_entity},
    {"uow_find", "NULL where", UOW_OK, NULL, find_null_where},
    {"uow_find", "NULL params, nparams 1", UOW_EINVAL, "are required", find_null_params},
    {"uow_find", "NULL rows", UOW_EINVAL, "are required", find_null_rows},
    {"uow_find", "NULL count", UOW_EINVAL, "are required", find_null_count},
    {"uow_find_ex", "NULL entity", UOW_EINVAL, "is not mapped", find_ex_null_entity},
    {"uow_find_ex", "NULL params, nparams 1", UOW_EINVAL, "are required", find_ex_null_params},
    {"uow_find_ex", "NULL rows and count", UOW_EINVAL, "are required", find_ex_null_rows_and_count},
    {"uow_fetch", "NULL items", UOW_EINVAL, "items and a count", fetch_null_items},
    {"uow_fetch", "n 0", UOW_EINVAL, "items and a count", fetch_no_items},
    {"uow_fetch_get", "NULL entity", UOW_EINVAL, "is not mapped", fetch_get_null_entity},
    {"uow_fetch_get", "NULL out", UOW_EINVAL, "object is required", fetch_get_null_out},
    {"uow_fetch_get", "NULL key", UOW_EINVAL, "rows, count and params are required",
     fetch_get_null_key},
    {"uow_fetch_find", "NULL where", UOW_OK, NULL, fetch_find_null_where},
    {"uow_fetch_find", "NULL params, nparams 1", UOW_EINVAL, "rows, count and params are required",
     fetch_find_null_params},
    {"uow_fetch_find", "NULL rows and count", UOW_EINVAL, "rows, count and params are required",
     fetch_find_null_rows_and_count},
    {"uow_new", "NULL entity", UOW_EINVAL, "is not mapped", new_null_entity},
    {"uow_new", "NULL out", UOW_EINVAL, "out is required", new_null_out},
    {"uow_delete", "NULL object", UOW_EINVAL, "not an object of this unit", delete_null_object},
    {"uow_exec", "NULL store", UOW_EINVAL, "no store named '(null)'", exec_null_store},
    {"uow_exec", "NULL sql", UOW_EINVAL, "sql and params are required", exec_null_sql},
    {"uow_exec", "NULL params, nparams 1", UOW_EINVAL, "sql and params are required",
     exec_null_params},
    {"uow_exec_ex", "NULL store", UOW_EINVAL, "no store named '(null)'", exec_ex_null_store},
    {"uow_exec_ex", "NULL affected", UOW_OK, NULL, exec_ex_null_affected},
    {"uow_emit", "NULL topic", UOW_EINVAL, "a topic is required", emit_null_topic},
    {"uow_emit", "NULL payload, len 3", UOW_EINVAL, "payload for len", emit_null_payload_with_len},
    {"uow_emit", "NULL key and payload, len 0", UOW_OK, NULL, emit_null_key_and_payload},
    {"uow_on_commit", "NULL fn", UOW_EINVAL, "no function", on_commit_null_fn},
    {"uow_on_commit", "NULL arg", UOW_OK, NULL, on_commit_null_arg},
    {"uow_strdup", "NULL string", UOW_OK, NULL, strdup_null_string},
    {"uow_blobdup", "NULL data, size 5", UOW_EINVAL, "no data for 5 bytes", blobdup_null_data},
    {"uow_blobdup", "NULL data, size 0", UOW_OK, NULL, blobdup_null_data_empty},
    {"uow_errmsg", "a unit", UOW_OK, NULL, errmsg_and_env_of_a_unit},
    {"uow_unit_env", "a unit", UOW_OK, NULL, errmsg_and_env_of_a_unit},
};

static void every_function_refuses_null_handles_with_einval(void **state) {
  test_world *w = *state;
  fixture f = {w->env, NULL, NULL, 1, 0, {0}};
  run_calls(&f, null_handle_calls, COUNT(null_handle_calls), false);
  assert_written(w->env, 0);
}

static void free_close_and_accessor_functions_accept_null(void **state) {
  test_world *w = *state;
  fixture f = {w->env, NULL, NULL, 1, 0, {0}};
  run_calls(&f, null_accepted_calls, COUNT(null_accepted_calls), false);
  assert_written(w->env, 0);
}

/* An active unit on `env` with user `id` loaded, and a sink that takes everything. */
static void fixture_open(fixture *f, uow_env *env, int64_t id) {
  memset(f, 0, sizeof(*f));
  f->env = env;
  f->id = id;
  f->sink.version = UOW_SINK_VERSION;
  f->sink.name = "take-all";
  f->sink.deliver = take_all;
  f->sink.ctx = &f->taken;
  f->unit = begin(env);
  UOK(f->unit, uow_get(f->unit, &user_entity, &id, (void **)&f->object));
}

static void every_null_argument_is_refused_as_documented_and_writes_nothing(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "seed@example.com");
  fixture f;
  fixture_open(&f, w->env, id);
  run_calls(&f, unit_argument_calls, COUNT(unit_argument_calls), true);
  /* None of it hurt the unit: it still takes work. */
  new_user(f.unit, "after@example.com");
  UOK(f.unit, uow_flush(f.unit));
  UOK(f.unit, uow_rollback(f.unit));
  uow_end(f.unit);
  f.unit = NULL;
  /* The set-up calls need the environment without open units. */
  run_calls(&f, env_argument_calls, COUNT(env_argument_calls), false);
  assert_written(w->env, 1);
}

/* Every function declared in include/uow.h and include/uow/store.h, and the
 * value helpers, has a row in the tables above. */
static void matrix_covers_every_public_function(void **state) {
  (void)state;
  static const char *const headers[] = {"include/uow.h", "include/uow/store.h"};
  const call *tables[] = {null_handle_calls, null_accepted_calls, env_argument_calls,
                          unit_argument_calls};
  const size_t sizes[] = {COUNT(null_handle_calls), COUNT(null_accepted_calls),
                          COUNT(env_argument_calls), COUNT(unit_argument_calls)};
  size_t functions = 0;
  for (size_t h = 0; h < COUNT(headers); h++) {
    char path[2048], line[1024];
    snprintf(path, sizeof(path), "%s/%s", getenv("UOW_SOURCE_DIR"), headers[h]);
    FILE *file = fopen(path, "r");
    if (!file)
      fail_msg("cannot read %s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), file)) {
      /* "UOW_API <type> uow_name(" and "static inline uow_value uow_name(" */
      if (strncmp(line, "UOW_API ", 8) != 0 && strncmp(line, "static inline ", 14) != 0)
        continue;
      char *paren = strchr(line, '(');
      char *name = paren ? paren : line;
      while (name > line && (name[-1] == '_' || (name[-1] >= 'a' && name[-1] <= 'z') ||
                             (name[-1] >= '0' && name[-1] <= '9')))
        name--;
      if (!paren || strncmp(name, "uow_", 4) != 0)
        continue;
      *paren = '\0';
      bool covered = false;
      for (size_t t = 0; t < COUNT(tables) && !covered; t++)
        for (size_t i = 0; i < sizes[t] && !covered; i++)
          covered = strcmp(tables[t][i].function, name) == 0;
      if (!covered)
        fail_msg("%s declares %s, which has no row in the misuse matrix", headers[h], name);
      functions++;
    }
    fclose(file);
  }
  assert_true(functions >= 48);
}

/* ---- units in every state where verbs are refused ---- */

typedef struct unit_state {
  const char *name;
  const char *says; /* what the refusal's message says of the state */
  int rollback;     /* what uow_rollback returns then */
  /* Bring `f->unit` (which has `f->object` loaded) into the state. */
  void (*reach)(fixture *f);
} unit_state;

static void reach_committed(fixture *f) { UOK(f->unit, uow_commit(f->unit)); }
static void reach_rolled_back(fixture *f) { UOK(f->unit, uow_rollback(f->unit)); }
static void reach_failed_flush(fixture *f) {
  new_user(f->unit, "seed@example.com"); /* the email is taken */
  UCODE(f->unit, UOW_ECONSTRAINT, uow_flush(f->unit));
}
static void reach_failed_statement(fixture *f) {
  UCODE(f->unit, UOW_EINVAL, uow_exec(f->unit, "main", "UPDATE no_such_table SET x = 1", NULL, 0));
}
static void reach_failed_commit(fixture *f) {
  new_user(f->unit, "seed@example.com");
  UCODE(f->unit, UOW_ECONSTRAINT, uow_commit(f->unit));
}
static void reach_ended(fixture *f) { uow_end(f->unit); }

static const unit_state unit_states[] = {
    {"committed", "already committed", UOW_EMISUSE, reach_committed},
    {"rolled back", "already rolled back", UOW_EMISUSE, reach_rolled_back},
    {"failed flush", "failed earlier", UOW_OK, reach_failed_flush},
    {"failed statement", "failed earlier", UOW_OK, reach_failed_statement},
    {"failed commit", "failed earlier", UOW_OK, reach_failed_commit},
    /* An ended handle stays on the environment's free list until a later
     * uow_begin reuses it, so calls on it are refused, not undefined. */
    {"ended", "has ended", UOW_EMISUSE, reach_ended},
};

/* Verbs that must be refused; a verb that returns a pointer returns
 * UOW_EMISUSE here when it returned NULL. The object is passed, never read. */
static int verb_get(fixture *f) {
  void *out = f;
  int rc = uow_get(f->unit, &user_entity, &f->id, &out);
  assert_null(out);
  return rc;
}
static int verb_get_ex(fixture *f) {
  void *out = NULL;
  return uow_get_ex(f->unit, &user_entity, &f->id, UOW_FOR_UPDATE, &out);
}
static int verb_find(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find(f->unit, &user_entity, NULL, NULL, 0, &rows, &count);
}
static int verb_find_ex(fixture *f) {
  void **rows = NULL;
  size_t count = 0;
  return uow_find_ex(f->unit, &user_entity, NULL, NULL, 0, UOW_FOR_UPDATE, &rows, &count);
}
static int verb_fetch(fixture *f) {
  void *out = f;
  uow_fetch_item item = uow_fetch_get(&user_entity, &f->id, 0, &out);
  int rc = uow_fetch(f->unit, &item, 1);
  assert_null(out);
  return rc;
}
static int verb_new(fixture *f) {
  void *out = NULL;
  return uow_new(f->unit, &user_entity, &out);
}
static int verb_delete(fixture *f) { return uow_delete(f->unit, f->object); }
static int verb_flush(fixture *f) { return uow_flush(f->unit); }
static int verb_send(fixture *f) { return uow_send(f->unit); }
static int verb_exec(fixture *f) { return uow_exec(f->unit, "main", "DELETE FROM users", NULL, 0); }
static int verb_exec_ex(fixture *f) {
  int64_t affected = -1;
  int rc = uow_exec_ex(f->unit, "main", "DELETE FROM users", NULL, 0, &affected);
  assert_int_equal(affected, -1);
  return rc;
}
static int verb_emit(fixture *f) { return uow_emit(f->unit, "late", "key", "p", 1); }
static int verb_on_commit(fixture *f) { return uow_on_commit(f->unit, hook_that_counts, NULL); }
static int verb_savepoint(fixture *f) { return uow_savepoint(f->unit); }
static int verb_release(fixture *f) { return uow_release(f->unit); }
static int verb_rollback_to(fixture *f) { return uow_rollback_to(f->unit); }
static int verb_commit(fixture *f) { return uow_commit(f->unit); }
static int verb_strdup(fixture *f) { return uow_strdup(f->unit, "late") ? UOW_OK : UOW_EMISUSE; }
static int verb_blobdup(fixture *f) {
  return uow_blobdup(f->unit, "late", 4).data ? UOW_OK : UOW_EMISUSE;
}

static const call refused_verbs[] = {
    {"uow_get", "", UOW_EMISUSE, "get: ", verb_get},
    {"uow_get_ex", "FOR UPDATE", UOW_EMISUSE, "get: ", verb_get_ex},
    {"uow_find", "", UOW_EMISUSE, "find: ", verb_find},
    {"uow_find_ex", "FOR UPDATE", UOW_EMISUSE, "find: ", verb_find_ex},
    {"uow_fetch", "a get", UOW_EMISUSE, "fetch: ", verb_fetch},
    {"uow_new", "", UOW_EMISUSE, "new: ", verb_new},
    {"uow_delete", "its object", UOW_EMISUSE, "delete: ", verb_delete},
    {"uow_flush", "", UOW_EMISUSE, "flush: ", verb_flush},
    {"uow_send", "", UOW_EMISUSE, "send: ", verb_send},
    {"uow_exec", "DELETE FROM users", UOW_EMISUSE, "exec: ", verb_exec},
    {"uow_exec_ex", "DELETE FROM users", UOW_EMISUSE, "exec: ", verb_exec_ex},
    {"uow_emit", "", UOW_EMISUSE, "emit: ", verb_emit},
    {"uow_on_commit", "", UOW_EMISUSE, "on_commit: ", verb_on_commit},
    {"uow_savepoint", "", UOW_EMISUSE, "savepoint: ", verb_savepoint},
    {"uow_release", "", UOW_EMISUSE, "release: ", verb_release},
    {"uow_rollback_to", "", UOW_EMISUSE, "rollback_to: ", verb_rollback_to},
    {"uow_commit", "", UOW_EMISUSE, "commit: ", verb_commit},
    {"uow_strdup", "", UOW_EMISUSE, "strdup: ", verb_strdup},
    {"uow_blobdup", "", UOW_EMISUSE, "blobdup: ", verb_blobdup},
};

static void units_refuse_every_verb_in_every_state_but_active_and_write_nothing(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "seed@example.com");
  for (size_t s = 0; s < COUNT(unit_states); s++) {
    const unit_state *st = &unit_states[s];
    fixture f;
    fixture_open(&f, w->env, id);
    st->reach(&f);
    for (size_t v = 0; v < COUNT(refused_verbs); v++) {
      const call *c = &refused_verbs[v];
      int rc = c->run(&f);
      const char *msg = uow_errmsg(f.unit);
      if (rc != UOW_EMISUSE)
        fail_msg("%s on a %s unit returned %d (%s): %s", c->function, st->name, rc,
                 uow_strerror(rc), msg);
      /* A failed unit without a savepoint says so instead. */
      const char *says = strcmp(c->function, "uow_rollback_to") == 0 && st->rollback == UOW_OK
                             ? "no savepoint is open"
                             : st->says;
      if (!strstr(msg, c->message) || !strstr(msg, says))
        fail_msg("%s on a %s unit: the message \"%s\" does not say \"%s\" and \"%s\"", c->function,
                 st->name, msg, c->message, says);
    }
    int rc = uow_rollback(f.unit);
    if (rc != st->rollback)
      fail_msg("uow_rollback on a %s unit returned %d (%s), expected %d: %s", st->name, rc,
               uow_strerror(rc), st->rollback, uow_errmsg(f.unit));
    uow_end(f.unit);
    uow_end(f.unit); /* a second end is harmless */
    assert_written(w->env, 1);
  }
  /* The seeded row is as it was. */
  assert_int_equal(test_count(w->env, "users", "email = 'seed@example.com' AND version = 1"), 1);
}

/* ---- savepoints ---- */

static void savepoint_misuse_is_refused_and_rollback_to_recovers_a_failed_flush(void **state) {
  test_world *w = *state;
  seed_user(w->env, "seed@example.com");
  uow_unit *unit = begin(w->env);
  new_user(unit, "a@example.com");
  /* No savepoint to release or go back to: refused, and the unit stays active. */
  UCODE(unit, UOW_EMISUSE, uow_release(unit));
  assert_contains(uow_errmsg(unit), "no savepoint is open");
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit));
  assert_contains(uow_errmsg(unit), "no savepoint is open");
  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_release(unit));
  UCODE(unit, UOW_EMISUSE, uow_release(unit)); /* released already */
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit));

  /* A flush that fails inside a savepoint: only rollback_to (or rollback) then. */
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "seed@example.com");
  UCODE(unit, UOW_ECONSTRAINT, uow_flush(unit));
  void *out = NULL;
  UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out));
  assert_contains(uow_errmsg(unit), "failed earlier");
  UCODE(unit, UOW_EMISUSE, uow_release(unit));
  UCODE(unit, UOW_EMISUSE, uow_savepoint(unit));
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  UOK(unit, uow_rollback_to(unit));
  new_user(unit, "b@example.com");

  /* A savepoint still open at commit: its work commits with the rest. */
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "c@example.com");
  UOK(unit, uow_commit(unit));
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 4);
  assert_int_equal(test_count(w->env, "users", "email = 'seed@example.com'"), 1);
}

/* ---- objects of another unit, deleted objects ---- */

static void objects_of_another_unit_are_refused_and_deleting_twice_is_harmless(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "seed@example.com");
  uow_unit *a = begin(w->env);
  uow_unit *b = begin(w->env);
  user *in_a = NULL, *in_b = NULL;
  UOK(a, uow_get(a, &user_entity, &id, (void **)&in_a));
  UOK(b, uow_get(b, &user_entity, &id, (void **)&in_b));
  assert_ptr_not_equal(in_a, in_b); /* one identity map per unit */

  UCODE(b, UOW_EINVAL, uow_delete(b, in_a));
  assert_contains(uow_errmsg(b), "not an object of this unit");

  /* A parent pointer to another unit's object: refused at the flush. */
  course *theirs = NULL;
  UOK(a, uow_new(a, &course_entity, (void **)&theirs));
  theirs->title = copy_text(a, "Theirs");
  enrollment *e = NULL;
  UOK(b, uow_new(b, &enrollment_entity, (void **)&e));
  e->learner = copy_text(b, "learner");
  e->course = theirs;
  UCODE(b, UOW_EINVAL, uow_flush(b));
  assert_contains(uow_errmsg(b), "not a course of this unit");
  UCODE(b, UOW_EMISUSE, uow_commit(b)); /* the failed flush left it failed */
  UOK(b, uow_rollback(b));
  uow_end(b);

  /* Deleting twice deletes once; the deleted object is not found again. */
  UOK(a, uow_delete(a, in_a));
  UOK(a, uow_delete(a, in_a));
  void *out = NULL;
  UCODE(a, UOW_ENOTFOUND, uow_get(a, &user_entity, &id, &out));
  assert_contains(uow_errmsg(a), "deleted in this unit");
  UOK(a, uow_delete(a, theirs)); /* a new object deleted is forgotten */
  UOK(a, uow_delete(a, theirs));
  UOK(a, uow_commit(a));
  uow_end(a);
  assert_int_equal(test_count(w->env, "users", NULL), 0);
  assert_int_equal(test_count(w->env, "courses", NULL), 0);
  assert_int_equal(test_count(w->env, "enrollments", NULL), 0);
}

/* ---- set-up calls: once, in order, before units ---- */

typedef struct extra {
  int64_t id;
  char *what;
} extra;
static const uow_column extra_columns[] = {
    UOW_COLUMN(extra, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(extra, what, UOW_TEXT, UOW_NULLABLE),
};
static const uow_entity extra_entity = UOW_ENTITY(extra, "misuse_extras", extra_columns);

static int map_inside_a_unit(uow_unit *unit, void *arg) {
  (void)arg;
  return uow_env_map(uow_unit_env(unit), &extra_entity, "main");
}

static void setup_calls_while_units_are_open_are_refused_with_emisuse(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  UCODE(unit, UOW_EMISUSE, uow_env_map(w->env, &extra_entity, "main"));
  assert_contains(uow_env_errmsg(w->env), "1 unit is open");
  UCODE(unit, UOW_EMISUSE, uow_env_add_store(w->env, "side", "sqlite::memory:"));
  assert_contains(uow_env_errmsg(w->env), "add stores and map entities before units begin");
  /* A store added now would be out of the unit's reach: the unit was sized without it. */
  void *out = NULL;
  UCODE(unit, UOW_EINVAL, uow_new(unit, &extra_entity, &out));
  uow_unit *second = begin(w->env);
  UCODE(second, UOW_EMISUSE, uow_env_map(w->env, &extra_entity, "main"));
  assert_contains(uow_env_errmsg(w->env), "2 units are open");
  uow_end(second);
  /* uow_run's unit is open while its function runs. */
  uow_end(unit);
  assert_int_equal(uow_run(w->env, map_inside_a_unit, NULL, NULL), UOW_EMISUSE);
  /* create_schema is allowed beside units (docs/threading.md). */
  unit = begin(w->env);
  EOK(w->env, uow_env_create_schema(w->env));
  uow_end(unit);

  /* With every unit ended, set-up is open again. */
  EOK(w->env, uow_env_add_store(w->env, "side", "sqlite::memory:"));
  EOK(w->env, uow_env_map(w->env, &extra_entity, "side"));
  EOK(w->env, uow_env_create_schema(w->env));
  unit = begin(w->env);
  extra *x = NULL;
  UOK(unit, uow_new(unit, &extra_entity, (void **)&x));
  x->id = 1;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_written(w->env, 0);
}

typedef struct cached {
  int64_t id;
  char *body;
} cached;
static const uow_column cached_columns[] = {
    UOW_COLUMN(cached, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(cached, body, UOW_TEXT, 0),
};
static const uow_entity cached_entity = UOW_ENTITY(cached, "cached", cached_columns);

static void stores_and_mappings_cannot_be_added_twice_or_to_nothing(void **state) {
  test_world *w = *state;
  /* Store "main" exists: the name is taken, whatever the URL. */
  assert_int_equal(uow_env_add_store(w->env, "main", "sqlite::memory:"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "the name is taken");
  assert_int_equal(uow_env_add_store(w->env, "main", test_url()), UOW_EINVAL);
  /* Mapped already (by the test world), to the same store or another. */
  assert_int_equal(uow_env_map(w->env, &user_entity, "main"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "already mapped");
  assert_int_equal(uow_env_map(w->env, &extra_entity, "nowhere"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "no store named 'nowhere'");
  /* A store that cannot join a transaction needs a version column; the URL is
   * not reached (Redis may be down). */
  EOK(w->env, uow_env_add_store(w->env, "cache", "redis://127.0.0.1:1/0"));
  assert_int_equal(uow_env_map(w->env, &cached_entity, "cache"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "UOW_VERSION");

  /* An environment without stores. */
  uow_env *empty = NULL;
  assert_int_equal(uow_env_open(NULL, &empty), 0);
  uow_unit *unit = (uow_unit *)&unit;
  assert_int_equal(uow_begin(empty, &unit), UOW_EINVAL);
  assert_null(unit);
  assert_contains(uow_env_errmsg(empty), "no store");
  assert_int_equal(uow_env_map(empty, &user_entity, "main"), UOW_EINVAL);
  assert_int_equal(uow_env_create_schema(empty), 0); /* nothing to create */
  size_t count = 9;
  assert_int_equal(uow_env_status(empty, NULL, 0, &count), 0);
  assert_int_equal(count, 0);
  uow_env_close(empty);

  /* The world's store still works. */
  int64_t id = seed_user(w->env, "still@example.com");
  assert_true(id > 0);
  assert_written(w->env, 1);
}

/* ---- options ---- */

static void bad_options_and_versions_are_refused_before_anything_runs(void **state) {
  test_world *w = *state;
  uow_env *env = (uow_env *)&env;
  uow_env_options env_opts = UOW_ENV_OPTIONS_INIT;
  env_opts.version = 0;
  assert_int_equal(uow_env_open(&env_opts, &env), UOW_EINVAL);
  assert_null(env);
  env_opts.version = UOW_ENV_OPTIONS_VERSION + 1;
  assert_int_equal(uow_env_open(&env_opts, &env), UOW_EINVAL);

  uow_unit *unit = NULL;
  uow_begin_options begin_opts = UOW_BEGIN_OPTIONS_INIT;
  begin_opts.version = UOW_BEGIN_OPTIONS_VERSION + 1;
  assert_int_equal(uow_begin_ex(w->env, &begin_opts, &unit), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "options version");
  static const int isolations[] = {-1, UOW_ISOLATION_SERIALIZABLE + 1, 42};
  for (size_t i = 0; i < COUNT(isolations); i++) {
    uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
    opts.isolation = (uow_isolation)isolations[i];
    assert_int_equal(uow_begin_ex(w->env, &opts, &unit), UOW_EINVAL);
    assert_null(unit);
    assert_contains(uow_env_errmsg(w->env), "unknown isolation level");
  }

  uow_run_options run_opts = UOW_RUN_OPTIONS_INIT;
  run_opts.version = 0;
  assert_int_equal(uow_run(w->env, body_that_writes_nothing, NULL, &run_opts), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "options version");
  run_opts = (uow_run_options)UOW_RUN_OPTIONS_INIT;
  run_opts.begin.isolation = (uow_isolation)42;
  assert_int_equal(uow_run(w->env, body_that_writes_nothing, NULL, &run_opts), UOW_EINVAL);

  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  report.version = 0;
  assert_int_equal(uow_recover(w->env, &report), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "report version");

  size_t taken = 0;
  uow_sink sink = {UOW_SINK_VERSION, "take-all", take_all, NULL, &taken};
  static const volatile int stop = 1;
  uow_relay_options relay[8];
  for (size_t i = 0; i < COUNT(relay); i++)
    relay[i] = (uow_relay_options)UOW_RELAY_OPTIONS_INIT;
  relay[0].version = 0;
  relay[1].batch = UINT_MAX;
  relay[2].backoff_ms = -1;
  relay[3].backoff_max_ms = -1;
  relay[4].lease_ms = -1;
  relay[5].poll_ms = -1;
  relay[6].store = "nowhere";
  relay[7].store = "";
  for (size_t i = 0; i < COUNT(relay); i++) {
    assert_int_equal(uow_relay_once(w->env, &sink, &relay[i], NULL), UOW_EINVAL);
    assert_true(uow_env_errmsg(w->env)[0] != '\0');
    assert_int_equal(uow_relay_run(w->env, &sink, &relay[i], &stop, NULL, NULL), UOW_EINVAL);
  }
  uow_sink bad = sink;
  bad.version = UOW_SINK_VERSION + 1;
  assert_int_equal(uow_relay_once(w->env, &bad, NULL, NULL), UOW_EINVAL);
  bad = sink;
  bad.deliver = NULL;
  assert_int_equal(uow_relay_once(w->env, &bad, NULL, NULL), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "no sink");
  assert_int_equal(uow_outbox_requeue(w->env, "nowhere", NULL), UOW_EINVAL);
  assert_contains(uow_env_errmsg(w->env), "no store named 'nowhere'");

  static const char *const stream_urls[] = {
      "http://127.0.0.1/0",    "redis://127.0.0.1:0/0",   "redis://127.0.0.1:70000/0",
      "redis://127.0.0.1/abc", "redis://user@127.0.0.1",  "rediss://127.0.0.1/0",
      "redis+unix://host/x",   "redis://127.0.0.1/0?x=1", ""};
  for (size_t i = 0; i < COUNT(stream_urls); i++) {
    uow_sink made;
    if (uow_sink_redis_stream(stream_urls[i], "events", &made) != UOW_EINVAL)
      fail_msg("uow_sink_redis_stream(\"%s\") was accepted", stream_urls[i]);
    assert_null(made.deliver);
    uow_sink_close(&made);
  }
  uow_sink made;
  assert_int_equal(uow_sink_redis_stream("redis://127.0.0.1/0", "", &made), UOW_EINVAL);
  assert_int_equal(uow_sink_command("", &made), UOW_EINVAL);

  static const char *const store_urls[] = {"mysql://localhost/db",
                                           "no-scheme-at-all",
                                           "",
                                           "sqlite:main.db?journal_mode=bogus",
                                           "sqlite:main.db?busy_timeout=-1",
                                           "sqlite:main.db?synchronous=maybe",
                                           "sqlite:main.db?no_such_option=1"};
  for (size_t i = 0; i < COUNT(store_urls); i++) {
    if (uow_env_add_store(w->env, "other", store_urls[i]) != UOW_EINVAL)
      fail_msg("uow_env_add_store(\"%s\") was not refused with UOW_EINVAL: %s", store_urls[i],
               uow_env_errmsg(w->env));
    assert_contains(uow_env_errmsg(w->env), "add store 'other'");
  }

  uow_store_ops ops;
  memset(&ops, 0, sizeof(ops));
  ops.abi = UOW_STORE_ABI;
  ops.scheme = "sqlite"; /* taken by the built-in store */
  ops.open = fake_open;
  ops.connect = fake_connect;
  assert_int_equal(uow_register_store(&ops), UOW_EINVAL);
  ops.scheme = NULL;
  assert_int_equal(uow_register_store(&ops), UOW_EINVAL);
  ops.scheme = "misuse-never-registered";
  ops.abi = UOW_STORE_ABI + 1;
  assert_int_equal(uow_register_store(&ops), UOW_EINVAL);
  ops.abi = UOW_STORE_ABI;
  ops.caps = UOW_STORE_TRANSACTIONAL | UOW_STORE_SQL; /* without query_int64 */
  assert_int_equal(uow_register_store(&ops), UOW_EINVAL);
  ops.caps = 0;
  ops.open = NULL;
  assert_int_equal(uow_register_store(&ops), UOW_EINVAL);

  assert_written(w->env, 0);
}

/* ---- identifiers: checked at uow_env_map, so that nothing reaches SQL ---- */

/* Names no identifier may have; the last ones are the lengths around the limit. */
static const char *const bad_names[] = {
    "users\"; DROP TABLE users; --",
    "users'",
    "us ers",
    "users;",
    "users--",
    "users.x",
    "users\n",
    "users)",
    "1users",
    "t\xc3\xa5"
    "ble",
    "t\xff",
    "",
    NULL,
    "a234567890123456789012345678901234567890123456789012345678901234", /* 64 */
};
static const char name_63[] =
    "misuse_89012345678901234567890123456789012345678901234567890123"; /* the longest */

static void map_rejects_bad_identifiers_and_creates_nothing(void **state) {
  test_world *w = *state;
  assert_int_equal(strlen(name_63), 63);
  long tables = table_count(w->env);
  for (size_t i = 0; i < COUNT(bad_names); i++) {
    const char *bad = bad_names[i];
    uow_column columns[2] = {UOW_COLUMN(tag, name, UOW_TEXT, UOW_PRIMARY_KEY),
                             UOW_COLUMN(tag, label, UOW_TEXT, 0)};
    uow_entity bad_table = UOW_ENTITY(tag, "tags_x", columns);
    bad_table.table = bad;
    assert_int_equal(uow_env_map(w->env, &bad_table, "main"), UOW_EINVAL);
    assert_contains(uow_env_errmsg(w->env), "table name must be letters, digits and underscores");

    uow_entity bad_column = UOW_ENTITY(tag, "misuse_tags", columns);
    columns[1].name = bad;
    assert_int_equal(uow_env_map(w->env, &bad_column, "main"), UOW_EINVAL);
    assert_contains(uow_env_errmsg(w->env), "column 1: name must be");

    if (uow_env_add_store(w->env, bad, "sqlite::memory:") != UOW_EINVAL)
      fail_msg("store name %zu was accepted", i);
    assert_contains(uow_env_errmsg(w->env), "the name must be 1 to 63");
  }
  EOK(w->env, uow_env_create_schema(w->env));
  assert_int_equal(table_count(w->env), tables);
  assert_written(w->env, 0);

  /* 63 characters are accepted, for tables, columns and stores alike. */
  uow_unit *unit = begin(w->env);
  char drop[128];
  snprintf(drop, sizeof(drop), "DROP TABLE IF EXISTS %s", name_63);
  UOK(unit, uow_exec(unit, "main", drop, NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  static const uow_column long_columns[] = {
      {name_63, UOW_TEXT, UOW_PRIMARY_KEY, offsetof(tag, name), sizeof(char *), NULL,
       UOW_NO_MEMBER},
      UOW_COLUMN(tag, label, UOW_TEXT, UOW_NULLABLE),
  };
  static const uow_entity long_entity = {"tag", name_63, sizeof(tag), long_columns, 2};
  EOK(w->env, uow_env_add_store(w->env, name_63, "sqlite::memory:"));
  EOK(w->env, uow_env_map(w->env, &long_entity, "main"));
  EOK(w->env, uow_env_create_schema(w->env));
  assert_int_equal(table_count(w->env), tables + 1);
  unit = begin(w->env);
  tag *t = NULL;
  UOK(unit, uow_new(unit, &long_entity, (void **)&t));
  t->name = copy_text(unit, "long");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, name_63, NULL), 1);
  unit = begin(w->env);
  UOK(unit, uow_exec(unit, "main", drop, NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* ---- descriptors: checked whole before anything reads past them ---- */

typedef struct thing {
  int64_t id;
  char *text;
  int64_t version;
  double amount;
  struct thing *parent;
  int64_t parent_id;
} thing;

#define THING_ID UOW_COLUMN(thing, id, UOW_INT64, UOW_PRIMARY_KEY)
#define THING_TEXT UOW_COLUMN(thing, text, UOW_TEXT, 0)

static const uow_column no_key[] = {THING_TEXT};
static const uow_column two_keys[] = {THING_ID, UOW_COLUMN(thing, text, UOW_TEXT, UOW_PRIMARY_KEY)};
static const uow_column double_key[] = {UOW_COLUMN(thing, amount, UOW_DOUBLE, UOW_PRIMARY_KEY)};
static const uow_column nullable_key[] = {
    UOW_COLUMN(thing, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_NULLABLE)};
static const uow_column generated_text_key[] = {
    UOW_COLUMN(thing, text, UOW_TEXT, UOW_PRIMARY_KEY | UOW_GENERATED)};
static const uow_column generated_non_key[] = {
    THING_ID, UOW_COLUMN(thing, version, UOW_INT64, UOW_GENERATED)};
static const uow_column text_version[] = {THING_ID, UOW_COLUMN(thing, text, UOW_TEXT, UOW_VERSION)};
static const uow_column two_versions[] = {THING_ID,
                                          UOW_COLUMN(thing, version, UOW_INT64, UOW_VERSION),
                                          UOW_COLUMN(thing, parent_id, UOW_INT64, UOW_VERSION)};
static const uow_column version_key[] = {
    UOW_COLUMN(thing, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_VERSION)};
static const uow_column size_mismatch[] = {
    {"id", UOW_INT64, UOW_PRIMARY_KEY, offsetof(thing, id), 4, NULL, UOW_NO_MEMBER}};
static const uow_column type_zero[] = {
    THING_ID, {"text", (uow_type)0, 0, offsetof(thing, text), sizeof(char *), NULL, UOW_NO_MEMBER}};
static const uow_column type_too_big[] = {
    THING_ID,
    {"text", (uow_type)99, 0, offsetof(thing, text), sizeof(char *), NULL, UOW_NO_MEMBER}};
static const uow_column past_the_end[] = {
    THING_ID, {"text", UOW_INT64, 0, sizeof(thing) - 4, sizeof(int64_t), NULL, UOW_NO_MEMBER}};
static const uow_column offset_wraps[] = {
    THING_ID, {"text", UOW_INT64, 0, SIZE_MAX - 3, sizeof(int64_t), NULL, UOW_NO_MEMBER}};
static const uow_column twice[] = {THING_ID, THING_TEXT, THING_TEXT};
static const uow_entity broken_target = {"broken", "broken", sizeof(thing), NULL, 0};
static const uow_column references_unmapped[] = {
    THING_ID, UOW_REFERENCE_KEY(thing, parent_id, UOW_INT64, broken_target, 0)};
static const uow_column reference_type_differs[] = {
    THING_ID, UOW_REFERENCE_KEY(thing, text, UOW_TEXT, user_entity, 0)};
static const uow_column parent_offset_wraps[] = {THING_ID,
                                                 {"parent_id", UOW_INT64, 0,
                                                  offsetof(thing, parent_id), sizeof(int64_t),
                                                  &user_entity, SIZE_MAX - 3}};
static uow_column too_many[65];

typedef struct bad_descriptor {
  const char *what;
  uow_entity entity;
  const char *says;
} bad_descriptor;

#define THING(columns)                                                                             \
  { "thing", "things", sizeof(thing), (columns), COUNT(columns) }

static const bad_descriptor bad_descriptors[] = {
    {"no column table", {"thing", "things", sizeof(thing), NULL, 1}, "1 to 64 columns"},
    {"zero columns", {"thing", "things", sizeof(thing), no_key, 0}, "1 to 64 columns"},
    {"65 columns", {"thing", "things", sizeof(thing), too_many, 65}, "1 to 64 columns"},
    {"size 0", {"thing", "things", 0, no_key, 1}, "1 to 64 columns"},
    {"no name", {NULL, "things", sizeof(thing), no_key, 1}, "no name"},
    {"no key", THING(no_key), "no primary key"},
    {"two keys", THING(two_keys), "more than one primary key"},
    {"a DOUBLE key", THING(double_key), "INT64 or TEXT"},
    {"a nullable key", THING(nullable_key), "cannot be nullable"},
    {"a generated TEXT key", THING(generated_text_key), "only an INT64 key"},
    {"a generated column that is not the key", THING(generated_non_key), "only the key"},
    {"a TEXT version", THING(text_version), "one INT64 version column"},
    {"two versions", THING(two_versions), "one INT64 version column"},
    {"a version that is the key", THING(version_key), "one INT64 version column"},
    {"a member size that is not its type's", THING(size_mismatch), "size does not match"},
    {"type 0", THING(type_zero), "size does not match"},
    {"type 99", THING(type_too_big), "size does not match"},
    {"a member past the struct", THING(past_the_end), "size does not match"},
    {"a member offset that wraps around", THING(offset_wraps), "size does not match"},
    {"a column twice", THING(twice), "appears twice"},
    {"a reference to an entity not mapped", THING(references_unmapped), "map the referenced"},
    {"a reference of another type than the key", THING(reference_type_differs), "type differs"},
    {"a parent member offset that wraps around", THING(parent_offset_wraps), "bad parent member"},
};

static void map_rejects_malformed_descriptors_without_reading_past_them(void **state) {
  test_world *w = *state;
  for (size_t i = 0; i < COUNT(too_many); i++)
    too_many[i] = (uow_column)THING_ID;
  long tables = table_count(w->env);
  for (size_t i = 0; i < COUNT(bad_descriptors); i++) {
    const bad_descriptor *d = &bad_descriptors[i];
    int rc = uow_env_map(w->env, &d->entity, "main");
    if (rc != UOW_EINVAL || !strstr(uow_env_errmsg(w->env), d->says))
      fail_msg("map (%s) returned %d (%s): \"%s\", expected UOW_EINVAL saying \"%s\"", d->what, rc,
               uow_strerror(rc), uow_env_errmsg(w->env), d->says);
    assert_true(strncmp(uow_env_errmsg(w->env), "map", 3) == 0);
  }
  EOK(w->env, uow_env_create_schema(w->env));
  assert_int_equal(table_count(w->env), tables);
  uow_unit *unit = begin(w->env);
  void *out = NULL;
  UCODE(unit, UOW_EINVAL, uow_new(unit, &bad_descriptors[5].entity, &out)); /* not mapped */
  uow_end(unit);
  assert_written(w->env, 0);
}

/* ---- values: always bound, never interpolated ---- */

static const char *const hostile_texts[] = {
    "'); DROP TABLE users; --",
    "\" OR 1=1 --",
    "x' OR '1'='1",
    "\\'; DELETE FROM users; --",
    "?",
    "$1",
    "%s%s%n",
    "users\"; DROP TABLE \"users",
    "/* comment */ --",
};

static void values_are_bound_never_interpolated(void **state) {
  test_world *w = *state;
  for (size_t i = 0; i < COUNT(hostile_texts); i++) {
    const char *text = hostile_texts[i];
    char email[64];
    snprintf(email, sizeof(email), "user%zu@example.com", i);
    uow_unit *unit = begin(w->env);
    user *u = new_user(unit, email);
    u->name = copy_text(unit, text);
    tag *t = NULL; /* a text primary key */
    UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
    t->name = copy_text(unit, text);
    t->label = copy_text(unit, text);
    UOK(unit, uow_emit(unit, text, text, text, strlen(text)));
    UOK(unit, uow_commit(unit));
    uow_end(unit);

    /* Read back through parameters, in a where clause and by key. */
    unit = begin(w->env);
    const uow_value param = uow_text(text);
    void **rows = NULL;
    size_t count = 0;
    UOK(unit, uow_find(unit, &user_entity, "name = ?", &param, 1, &rows, &count));
    assert_int_equal(count, 1);
    assert_string_equal(((user *)rows[0])->name, text);
    assert_string_equal(((user *)rows[0])->email, email);
    tag *got = NULL;
    UOK(unit, uow_get(unit, &tag_entity, &text, (void **)&got));
    assert_string_equal(got->label, text);
    int64_t changed = 0;
    const uow_value both[2] = {uow_text(text), uow_text(text)};
    UOK(unit,
        uow_exec_ex(unit, "main", "UPDATE tags SET label = ? WHERE name = ?", both, 2, &changed));
    assert_int_equal(changed, 1);
    UOK(unit, uow_find(unit, &outbox_event_entity, "topic = ? AND event_key = ?", both, 2, &rows,
                       &count));
    assert_int_equal(count, 1);
    const outbox_event *ev = rows[0];
    assert_int_equal(ev->payload.size, strlen(text));
    assert_memory_equal(ev->payload.data, text, strlen(text));
    UOK(unit, uow_commit(unit));
    uow_end(unit);
  }
  /* Every table is there, with every row. */
  assert_int_equal(test_count(w->env, "users", NULL), (long)COUNT(hostile_texts));
  assert_int_equal(test_count(w->env, "tags", NULL), (long)COUNT(hostile_texts));
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), (long)COUNT(hostile_texts));

  /* A second statement in uow_exec is refused before the first one runs. */
  uow_unit *unit = begin(w->env);
  int rc = uow_exec(unit, "main", "DELETE FROM tags; DROP TABLE users", NULL, 0);
  assert_int_equal(rc, UOW_EINVAL);
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", NULL), (long)COUNT(hostile_texts));
  assert_int_equal(test_count(w->env, "users", NULL), (long)COUNT(hostile_texts));
}

/* Text and length: a value's size is what counts, not a NUL after it. */
static void text_values_are_taken_by_their_length(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  uow_value two_of_six = uow_text("abcdef");
  two_of_six.v.bytes.size = 2;
  uow_value params[2] = {two_of_six, uow_text("label")};
  UOK(unit, uow_exec(unit, "main", "INSERT INTO tags (name, label) VALUES (?, ?)", params, 2));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", "name = 'ab'"), 1);

  /* A NUL inside text: SQLite stores the bytes as given; PostgreSQL text cannot
   * hold one, so the store refuses it rather than cut the value short. */
  unit = begin(w->env);
  uow_value with_nul = uow_text("ab");
  with_nul.v.bytes.data = "ab\0cd";
  with_nul.v.bytes.size = 5;
  params[0] = with_nul;
  int rc = uow_exec(unit, "main", "INSERT INTO tags (name, label) VALUES (?, ?)", params, 2);
  if (test_on_sqlite()) {
    UOK(unit, rc);
    UOK(unit, uow_commit(unit));
    assert_int_equal(test_int(w->env, "SELECT length(CAST(name AS BLOB)) FROM tags WHERE "
                                      "name <> 'ab'"),
                     5);
  } else {
    UCODE(unit, UOW_EINVAL, rc);
    assert_contains(uow_errmsg(unit), "NUL byte");
    UOK(unit, uow_rollback(unit));
    assert_int_equal(test_count(w->env, "tags", NULL), 1);
  }
  uow_end(unit);

  /* A blob keeps its NULs. */
  static const unsigned char bytes[] = {'a', 0, 'b', 0};
  unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 1;
  n->data = uow_blobdup(unit, bytes, sizeof(bytes));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  unit = begin(w->env);
  int64_t id = 1;
  UOK(unit, uow_get(unit, &note_entity, &id, (void **)&n));
  assert_int_equal(n->data.size, sizeof(bytes));
  assert_memory_equal(n->data.data, bytes, sizeof(bytes));
  uow_end(unit);
}

/* Byte strings that are not UTF-8: a stray continuation byte, a truncated
 * sequence, an overlong encoding, a surrogate, bytes never valid. */
static const char *const invalid_utf8[] = {
    "bad \xff\xfe", "\xc3\x28", "ok\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\x80 lone",
};

static void
invalid_utf8_round_trips_on_sqlite_and_postgresql_refuses_it_writing_nothing(void **state) {
  test_world *w = *state;
  for (size_t i = 0; i < COUNT(invalid_utf8); i++) {
    const char *text = invalid_utf8[i];
    uow_unit *unit = begin(w->env);
    note *n = NULL;
    UOK(unit, uow_new(unit, &note_entity, (void **)&n));
    n->id = (int64_t)i + 1;
    n->body = copy_text(unit, text);
    new_user(unit, "beside@example.com"); /* written with it, or not at all */
    int rc = uow_commit(unit);
    if (test_on_sqlite()) {
      UOK(unit, rc);
      uow_end(unit);
      unit = begin(w->env);
      int64_t id = (int64_t)i + 1;
      UOK(unit, uow_get(unit, &note_entity, &id, (void **)&n));
      assert_string_equal(n->body, text); /* byte for byte */
      UOK(unit, uow_exec(unit, "main", "DELETE FROM users", NULL, 0));
      UOK(unit, uow_commit(unit));
    } else {
      UCODE(unit, UOW_EINVAL, rc);
      assert_contains(uow_errmsg(unit), "22021");
      assert_contains(uow_errmsg(unit), "nothing was written");
      UOK(unit, uow_rollback(unit));
      assert_int_equal(test_count(w->env, "notes", NULL), 0);
    }
    uow_end(unit);
    assert_written(w->env, 0);
  }

  /* As a parameter, and in an event. */
  const char *text = invalid_utf8[0];
  uow_unit *unit = begin(w->env);
  const uow_value param = uow_text(text);
  void **rows = NULL;
  size_t count = 0;
  int rc = uow_find(unit, &note_entity, "body = ?", &param, 1, &rows, &count);
  if (test_on_sqlite()) {
    UOK(unit, rc);
    assert_int_equal(count, 1);
  } else {
    UCODE(unit, UOW_EINVAL, rc);
    assert_contains(uow_errmsg(unit), "22021");
  }
  uow_end(unit);

  unit = begin(w->env);
  new_user(unit, "event@example.com");
  UOK(unit, uow_emit(unit, text, text, text, strlen(text)));
  rc = uow_commit(unit);
  if (test_on_sqlite()) {
    UOK(unit, rc);
    assert_int_equal(test_count(w->env, "uow_outbox", NULL), 1);
  } else {
    UCODE(unit, UOW_EINVAL, rc);
    assert_contains(uow_errmsg(unit), "nothing was written");
    assert_written(w->env, 0);
  }
  uow_end(unit);
}

/* ---- sizes: huge values, negative counts ---- */

static void huge_blob_and_event_payload_round_trip_byte_exact(void **state) {
  test_world *w = *state;
  const size_t blob_size = (size_t)64 << 20, payload_size = (size_t)16 << 20;
  unsigned char *bytes = malloc(blob_size);
  assert_non_null(bytes);
  uint32_t x = 2463534242u; /* xorshift: no run of bytes a store could shorten */
  for (size_t i = 0; i < blob_size; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    bytes[i] = (unsigned char)x;
  }
  uow_unit *unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 1;
  n->data.data = bytes; /* the caller's memory: it must live until the commit */
  n->data.size = blob_size;
  UOK(unit, uow_emit(unit, "huge", "k", bytes + 1, payload_size));
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  unit = begin(w->env);
  int64_t id = 1;
  UOK(unit, uow_get(unit, &note_entity, &id, (void **)&n));
  assert_int_equal(n->data.size, blob_size);
  assert_true(memcmp(n->data.data, bytes, blob_size) == 0);
  void **rows = NULL;
  size_t count = 0;
  UOK(unit, uow_find(unit, &outbox_event_entity, NULL, NULL, 0, &rows, &count));
  assert_int_equal(count, 1);
  const outbox_event *ev = rows[0];
  assert_int_equal(ev->payload.size, payload_size);
  assert_true(memcmp(ev->payload.data, bytes + 1, payload_size) == 0);
  uow_end(unit);
  free(bytes);
}

/* An event key or a text key too long for an index: SQLite takes it;
 * PostgreSQL refuses it (SQLSTATE 54000) as bad input, with nothing written. */
static void key_too_long_for_an_index_is_refused_as_einval_or_stored(void **state) {
  test_world *w = *state;
  enum { LONG = 10000 };
  char *key = malloc(LONG + 1);
  assert_non_null(key);
  uint32_t x = 88172645u;
  for (size_t i = 0; i < LONG; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    key[i] = (char)('a' + x % 26);
  }
  key[LONG] = '\0';
  for (int round = 0; round < 2; round++) {
    uow_unit *unit = begin(w->env);
    new_user(unit, "beside@example.com");
    if (round == 0) {
      UOK(unit, uow_emit(unit, "long.key", key, "p", 1));
    } else {
      tag *t = NULL;
      UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
      t->name = copy_text(unit, key);
      t->label = copy_text(unit, "long");
    }
    int rc = uow_commit(unit);
    if (test_on_sqlite()) {
      UOK(unit, rc);
      UOK(unit, rc);
    } else {
      UCODE(unit, UOW_EINVAL, rc);
      assert_contains(uow_errmsg(unit), "54000");
      assert_contains(uow_errmsg(unit), "nothing was written");
    }
    uow_end(unit);
    if (test_on_sqlite()) {
      unit = begin(w->env);
      UOK(unit, uow_exec(unit, "main", "DELETE FROM users", NULL, 0));
      UOK(unit, uow_exec(unit, "main", "DELETE FROM uow_outbox", NULL, 0));
      UOK(unit, uow_commit(unit));
      uow_end(unit);
    }
    assert_written(w->env, 0);
  }
  assert_int_equal(test_count(w->env, "tags", NULL), test_on_sqlite() ? 1 : 0);
  free(key);
}

static void negative_counts_and_oversized_lengths_are_refused_with_einval(void **state) {
  test_world *w = *state;
  static const char buf[16] = "0123456789abcde";
  const size_t negative = (size_t)-1, over = (size_t)INT_MAX + 1;
  uow_unit *unit = begin(w->env);
  new_user(unit, "kept@example.com");
  /* Refused by the unit, which stays active. */
  UCODE(unit, UOW_EINVAL, uow_emit(unit, "t", NULL, buf, negative));
  assert_contains(uow_errmsg(unit), "over 2 GiB");
  UCODE(unit, UOW_EINVAL, uow_emit(unit, "t", NULL, buf, over));
  uow_blob blob = uow_blobdup(unit, buf, negative);
  assert_null(blob.data);
  assert_int_equal(blob.size, 0);
  assert_contains(uow_errmsg(unit), "over 2 GiB");
  blob = uow_blobdup(unit, buf, over);
  assert_null(blob.data);
  uow_store_status one[1];
  size_t stores = 0;
  EOK(w->env, uow_env_status(w->env, one, negative, &stores)); /* fills what there is */
  assert_int_equal(stores, 1);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_written(w->env, 1);

  /* Refused by the store: the unit must be rolled back, and wrote nothing. */
  const uow_value param = uow_int64(1);
  uow_value long_text = uow_text(buf);
  long_text.v.bytes.size = negative;
  uow_value long_blob = uow_blob_value(buf, negative);
  uow_value over_text = uow_text(buf);
  over_text.v.bytes.size = over;
  uow_value bad_type = uow_int64(1);
  bad_type.type = (uow_type)99;
  for (int i = 0; i < 6; i++) {
    unit = begin(w->env);
    new_user(unit, "refused@example.com");
    void **rows = NULL;
    size_t count = 0;
    int rc = i == 0   ? uow_find(unit, &user_entity, "id = ?", &param, negative, &rows, &count)
             : i == 1 ? uow_exec(unit, "main", "DELETE FROM users WHERE id = ?", &param, negative)
             : i == 2 ? uow_exec(unit, "main", "DELETE FROM users WHERE name = ?", &long_text, 1)
             : i == 3 ? uow_exec(unit, "main", "DELETE FROM users WHERE name = ?", &long_blob, 1)
             : i == 4 ? uow_exec(unit, "main", "DELETE FROM users WHERE name = ?", &over_text, 1)
                      : uow_exec(unit, "main", "DELETE FROM users WHERE name = ?", &bad_type, 1);
    if (rc != UOW_EINVAL)
      fail_msg("case %d returned %d (%s): %s", i, rc, uow_strerror(rc), uow_errmsg(unit));
    assert_contains(uow_errmsg(unit), "store 'main'");
    UCODE(unit, UOW_EMISUSE, uow_commit(unit));
    UOK(unit, uow_rollback(unit));
    uow_end(unit);
    assert_written(w->env, 1);
  }
}

/* ---- the environment without the library's tables ---- */

static void relay_and_events_without_outbox_table_fail_clearly_and_write_nothing(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_exec(unit, "main",
                     test_on_sqlite() ? "DROP TABLE uow_outbox" : "DROP TABLE uow_outbox CASCADE",
                     NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  size_t taken = 0;
  uow_sink sink = {UOW_SINK_VERSION, "take-all", take_all, NULL, &taken};
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  assert_int_equal(uow_relay_once(w->env, &sink, NULL, &stats), UOW_EIO);
  assert_contains(uow_env_errmsg(w->env), "relay: store 'main'");
  assert_contains(uow_env_errmsg(w->env), "uow_outbox");
  assert_int_equal(taken, 0);
  assert_int_equal(uow_outbox_requeue(w->env, NULL, NULL), UOW_EIO);
  assert_contains(uow_env_errmsg(w->env), "requeue: store 'main'");
  uow_store_status status;
  size_t count = 0;
  EOK(w->env, uow_env_status(w->env, &status, 1, &count));
  assert_int_equal(status.outbox_pending, -1);
  assert_true(status.error[0] != '\0');

  /* A unit with an event cannot commit: nothing of it is written. */
  unit = begin(w->env);
  new_user(unit, "evented@example.com");
  UOK(unit, uow_emit(unit, "user.created", NULL, "{}", 2));
  int rc = uow_commit(unit);
  if (rc != UOW_EINVAL)
    fail_msg("commit returned %d (%s): %s", rc, uow_strerror(rc), uow_errmsg(unit));
  assert_contains(uow_errmsg(unit), "uow_outbox");
  assert_contains(uow_errmsg(unit), "nothing was written");
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0);
  /* One without events still can. */
  seed_user(w->env, "plain@example.com");
  assert_int_equal(test_count(w->env, "users", NULL), 1);
}

/* ---- transaction control behind the unit's back ---- */

static void
transaction_control_through_exec_is_misuse_and_nothing_after_it_is_written(void **state) {
  test_world *w = *state;
  static const char *const statements[] = {"COMMIT", "ROLLBACK", "END"};
  for (size_t i = 0; i < COUNT(statements); i++) {
    uow_unit *unit = begin(w->env);
    new_user(unit, "before@example.com");
    UOK(unit, uow_flush(unit));
    int rc = uow_exec(unit, "main", statements[i], NULL, 0);
    if (rc != UOW_EMISUSE)
      fail_msg("uow_exec(\"%s\") returned %d (%s): %s", statements[i], rc, uow_strerror(rc),
               uow_errmsg(unit));
    assert_contains(uow_errmsg(unit), "the transaction was ended by a statement");
    void *out = NULL;
    UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out));
    UCODE(unit, UOW_EMISUSE, uow_exec(unit, "main", "DELETE FROM users", NULL, 0));
    UCODE(unit, UOW_EMISUSE, uow_commit(unit));
    UOK(unit, uow_rollback(unit));
    uow_end(unit);
    /* What the statement itself committed cannot be taken back; nothing after it ran. */
    long kept = strcmp(statements[i], "ROLLBACK") == 0 ? 0 : 1;
    assert_int_equal(test_count(w->env, "users", NULL), kept);
    unit = begin(w->env);
    UOK(unit, uow_exec(unit, "main", "DELETE FROM users", NULL, 0));
    UOK(unit, uow_commit(unit));
    uow_end(unit);
  }
  assert_written(w->env, 0);
}

/* ---- files the library creates ---- */

static mode_t mode_of(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    fail_msg("stat %s: %s", path, strerror(errno));
  return sb.st_mode & 07777;
}

/* Open `url` (a new SQLite file), write in a unit and check the modes of
 * `files` while its transaction holds them. */
static void check_modes_while_writing(const char *url, const char *const *files, size_t n,
                                      mode_t want) {
  uow_env *env = NULL;
  assert_int_equal(uow_env_open(NULL, &env), 0);
  EOK(env, uow_env_add_store(env, "files", url));
  EOK(env, uow_env_map(env, &tag_entity, "files"));
  EOK(env, uow_env_create_schema(env));
  uow_unit *unit = begin(env);
  tag *t = NULL;
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = copy_text(unit, "file");
  t->label = copy_text(unit, "mode");
  UOK(unit, uow_flush(unit));
  for (size_t i = 0; i < n; i++) {
    mode_t got = mode_of(files[i]);
    if (got != want)
      fail_msg("%s has mode %04o, expected %04o", files[i], (unsigned)got, (unsigned)want);
  }
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  uow_env_close(env);
}

static void created_database_files_are_0600_whatever_the_umask(void **state) {
  (void)state;
  static const mode_t umasks[] = {022, 000, 077};
  mode_t old = umask(022);
  for (size_t i = 0; i < COUNT(umasks); i++) {
    umask(umasks[i]);
    char db[1200], wal[1300], shm[1300], journal[1300], url[1300];
    snprintf(db, sizeof(db), "%s/wal-%zu.db", test_dir(), i);
    snprintf(wal, sizeof(wal), "%s-wal", db);
    snprintf(shm, sizeof(shm), "%s-shm", db);
    snprintf(url, sizeof(url), "sqlite:%s", db);
    const char *const wal_files[] = {db, wal, shm};
    check_modes_while_writing(url, wal_files, COUNT(wal_files), 0600);
    unlink(db);
    unlink(wal);
    unlink(shm);

    snprintf(db, sizeof(db), "%s/journal-%zu.db", test_dir(), i);
    snprintf(journal, sizeof(journal), "%s-journal", db);
    snprintf(url, sizeof(url), "sqlite:%s?journal_mode=delete", db);
    const char *const journal_files[] = {db, journal};
    check_modes_while_writing(url, journal_files, COUNT(journal_files), 0600);
    unlink(db);
  }
  umask(old);
}

static void existing_database_file_keeps_its_mode(void **state) {
  (void)state;
  static const mode_t modes[] = {0644, 0640, 0660};
  mode_t old = umask(0);
  for (size_t i = 0; i < COUNT(modes); i++) {
    char db[1200], url[1300];
    snprintf(db, sizeof(db), "%s/existing-%zu.db", test_dir(), i);
    snprintf(url, sizeof(url), "sqlite:%s?journal_mode=delete", db);
    int fd = open(db, O_CREAT | O_EXCL | O_WRONLY, modes[i]);
    assert_true(fd >= 0);
    close(fd);
    char journal[1300];
    snprintf(journal, sizeof(journal), "%s-journal", db);
    /* SQLite gives its journal the database file's mode. */
    const char *const files[] = {db, journal};
    check_modes_while_writing(url, files, COUNT(files), modes[i]);
    assert_int_equal(mode_of(db), modes[i]);
    unlink(db);
  }
  umask(old);
}

/* ---- passwords never reach a message ---- */

#define SECRET "Sup3rS3cretPw"

/* Add store `url`; whatever happens, the environment's message and the
 * store's status must not show SECRET. */
static void check_add_store_hides_the_password(const char *url, const char *shown) {
  uow_env *env = NULL;
  assert_int_equal(uow_env_open(NULL, &env), 0);
  int rc = uow_env_add_store(env, "secret", url);
  const char *msg = uow_env_errmsg(env);
  if (strstr(msg, SECRET))
    fail_msg("add store (%s) returned %d: the message shows the password: %s", url, rc, msg);
  if (rc == UOW_OK) {
    uow_store_status status;
    size_t count = 0;
    EOK(env, uow_env_status(env, &status, 1, &count));
    assert_lacks(status.url, SECRET);
    assert_lacks(status.error, SECRET);
    assert_contains(status.url, shown);
  } else {
    assert_contains(msg, "add store 'secret'");
    assert_contains(msg, shown);
  }
  uow_env_close(env);
}

static void passwords_in_store_and_sink_urls_never_appear_in_messages(void **state) {
  test_world *w = *state;
  static const char *const urls[][2] = {
      /* PostgreSQL: unreachable, malformed, and libpq's own messages */
      {"postgresql://bob:" SECRET "@127.0.0.1:1/x", "bob:***@"},
      {"postgres://bob:" SECRET "@127.0.0.1:1/x", "bob:***@"},
      {"postgresql://bob@127.0.0.1:1/x?password=" SECRET "&connect_timeout=5", "password=***"},
      {"postgresql://bob:" SECRET "@/x?host=/nonexistent-uow-dir", "bob:***@"},
      {"postgresql://bob:" SECRET "@[::1/x", "bob:***@"},
      {"postgresql://bob:" SECRET "@[]/x", "bob:***@"},
      {"postgresql://bob:" SECRET "@127.0.0.1:notaport/x", "bob:***@"},
      {"postgresql://bob:" SECRET "@127.0.0.1:1/x?sslmode=bogus", "bob:***@"},
      {"postgresql://bob:" SECRET "%zz@127.0.0.1:1/x", "bob:***@"},
      {"postgresql://bob:" SECRET "@127.0.0.1:1/x?password", "bob:***@"},
      {"postgresql://bob:" SECRET "@127.0.0.1:1/x?bogus=1", "bob:***@"},
      {"postgresql://bob@127.0.0.1:1/x?bogus=1&password=" SECRET, "password=***"},
      {"postgresql://bob:" SECRET "@x@127.0.0.1:1/x", "bob:***@"},
      {"postgresql://bob:pa/" SECRET "@127.0.0.1:1/x", "bob:***@"}, /* a raw '/' */
      /* Redis: refused URLs, and stores that only fail at their first use */
      {"redis://:" SECRET "@host:99999/", ":***@"},
      {"redis://bob:" SECRET "@host/abc", "bob:***@"},
      {"redis+unix://bob:" SECRET "@/tmp/nope.sock?db=x", "bob:***@"},
      {"redis://:" SECRET "@127.0.0.1:1/0", ":***@"},
      {"redis+unix://bob:" SECRET "@/nonexistent-uow-dir/redis.sock", "bob:***@"},
      /* Unknown schemes are quoted, masked */
      {"mysql://bob:" SECRET "@127.0.0.1/x", "bob:***@"},
  };
  for (size_t i = 0; i < COUNT(urls); i++)
    check_add_store_hides_the_password(urls[i][0], urls[i][1]);

  /* A Redis store that is down: a unit reading from it says why, without the password. */
  typedef struct cached_v {
    int64_t id;
    char *body;
    int64_t version;
  } cached_v;
  static const uow_column cached_v_columns[] = {
      UOW_COLUMN(cached_v, id, UOW_INT64, UOW_PRIMARY_KEY),
      UOW_COLUMN(cached_v, body, UOW_TEXT, UOW_NULLABLE),
      UOW_COLUMN(cached_v, version, UOW_INT64, UOW_VERSION),
  };
  static const uow_entity cached_v_entity = UOW_ENTITY(cached_v, "cached", cached_v_columns);
  EOK(w->env, uow_env_add_store(w->env, "cache", "redis://app:" SECRET "@127.0.0.1:1/0"));
  EOK(w->env, uow_env_map(w->env, &cached_v_entity, "cache"));
  uow_unit *unit = begin(w->env);
  int64_t id = 1;
  void *out = NULL;
  UCODE(unit, UOW_EIO, uow_get(unit, &cached_v_entity, &id, &out));
  assert_contains(uow_errmsg(unit), "store 'cache'");
  assert_contains(uow_errmsg(unit), "app:***@");
  assert_lacks(uow_errmsg(unit), SECRET);
  uow_end(unit);

  /* The Redis stream sink: a refused URL, and one that cannot connect, whose
   * reason the relay keeps in the outbox (last_error). */
  uow_sink sink;
  assert_int_equal(uow_sink_redis_stream("redis://:" SECRET "@host:99999/", "s", &sink),
                   UOW_EINVAL);
  EOK(w->env, uow_sink_redis_stream("redis://app:" SECRET "@127.0.0.1:1/0", "s", &sink));
  unit = begin(w->env);
  UOK(unit, uow_emit(unit, "user.created", "k", "{}", 2));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  EOK(w->env, uow_relay_once(w->env, &sink, NULL, &stats));
  assert_int_equal(stats.retried, 1);
  assert_lacks(uow_env_errmsg(w->env), SECRET);
  char last_error[1024];
  assert_true(
      test_text(w->env, "SELECT last_error FROM uow_outbox", last_error, sizeof(last_error)));
  assert_contains(last_error, "app:***@");
  assert_lacks(last_error, SECRET);
  uow_sink_close(&sink);
}

/* The symlink to the test server's socket that a store reaches it through,
 * and the directory holding it, so that the test can take the server away. */
typedef struct pg_link {
  char dir[64];
  char link[128];
  char url[512];
} pg_link;

static void pg_link_open(pg_link *l, const char *query) {
  const char *pg = getenv("UOW_TEST_PG_URL");
  assert_non_null(pg);
  /* postgresql:///DB?host=SOCKDIR&port=PORT&user=USER */
  char db[128] = "", host[512] = "", port[16] = "", user[64] = "";
  const char *q = strchr(pg, '?');
  assert_non_null(q);
  sscanf(pg, "postgresql:///%127[^?]", db);
  for (const char *p = q + 1; *p;) {
    size_t n = strcspn(p, "&");
    if (strncmp(p, "host=", 5) == 0)
      snprintf(host, sizeof(host), "%.*s", (int)n - 5, p + 5);
    else if (strncmp(p, "port=", 5) == 0)
      snprintf(port, sizeof(port), "%.*s", (int)n - 5, p + 5);
    else if (strncmp(p, "user=", 5) == 0)
      snprintf(user, sizeof(user), "%.*s", (int)n - 5, p + 5);
    p += n + (p[n] == '&');
  }
  if (!db[0] || !host[0] || !port[0] || !user[0])
    fail_msg("cannot read UOW_TEST_PG_URL %s", pg);
  /* Short: a unix socket's path has a little over 100 bytes. */
  snprintf(l->dir, sizeof(l->dir), "/tmp/uow-misuse.XXXXXX");
  assert_non_null(mkdtemp(l->dir));
  char target[1024];
  snprintf(target, sizeof(target), "%s/.s.PGSQL.%s", host, port);
  snprintf(l->link, sizeof(l->link), "%s/.s.PGSQL.%s", l->dir, port);
  assert_int_equal(symlink(target, l->link), 0);
  snprintf(l->url, sizeof(l->url), "postgresql://%s:%s@/%s?host=%s&port=%s%s", user,
           strstr(query, "password=") ? "" : SECRET, db, l->dir, port, query);
  if (strstr(query, "password="))
    snprintf(l->url, sizeof(l->url), "postgresql://%s@/%s?host=%s&port=%s%s", user, db, l->dir,
             port, query);
}

static void pg_link_close(pg_link *l) {
  unlink(l->link);
  rmdir(l->dir);
}

/* PostgreSQL only: a store added while its server was there, then gone. Every
 * path that reports it (status, recover, relay, requeue, a unit) hides the password. */
static void postgresql_password_is_hidden_when_the_server_goes_away(void **state) {
  (void)state; /* registered for the postgresql store only (its name) */
  static const char *const queries[] = {"", "&password=" SECRET};
  for (size_t i = 0; i < COUNT(queries); i++) {
    pg_link l;
    pg_link_open(&l, queries[i]);
    uow_env *env = NULL;
    assert_int_equal(uow_env_open(NULL, &env), 0);
    /* The test server trusts local connections, so any password is accepted. */
    EOK(env, uow_env_add_store(env, "ledger", l.url));
    EOK(env, uow_env_map(env, &tag_entity, "ledger"));
    /* No pooled connection yet (add_store closes the one it checks the URL with). */
    assert_int_equal(unlink(l.link), 0); /* the server goes away */

    uow_store_status status;
    size_t count = 0;
    EOK(env, uow_env_status(env, &status, 1, &count));
    assert_false(status.reachable);
    assert_true(status.error[0] != '\0');
    assert_lacks(status.error, SECRET);
    assert_lacks(status.url, SECRET);
    assert_contains(status.url, "***");
    assert_int_equal(uow_recover(env, NULL), UOW_EIO);
    assert_lacks(uow_env_errmsg(env), SECRET);
    size_t taken = 0;
    uow_sink sink = {UOW_SINK_VERSION, "take-all", take_all, NULL, &taken};
    assert_int_equal(uow_relay_once(env, &sink, NULL, NULL), UOW_EIO);
    assert_contains(uow_env_errmsg(env), "store 'ledger'");
    assert_lacks(uow_env_errmsg(env), SECRET);
    assert_int_equal(uow_outbox_requeue(env, NULL, NULL), UOW_EIO);
    assert_lacks(uow_env_errmsg(env), SECRET);
    uow_unit *unit = begin(env);
    const char *key = "k";
    void *out = NULL;
    UCODE(unit, UOW_EIO, uow_get(unit, &tag_entity, &key, &out));
    assert_contains(uow_errmsg(unit), "store 'ledger'");
    assert_contains(uow_errmsg(unit), "***");
    assert_lacks(uow_errmsg(unit), SECRET);
    uow_end(unit);
    uow_env_close(env);
    pg_link_close(&l);
  }
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(every_function_refuses_null_handles_with_einval, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(free_close_and_accessor_functions_accept_null, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(every_null_argument_is_refused_as_documented_and_writes_nothing, test_setup, test_teardown),
      cmocka_unit_test(matrix_covers_every_public_function),
      cmocka_unit_test_setup_teardown(units_refuse_every_verb_in_every_state_but_active_and_write_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_misuse_is_refused_and_rollback_to_recovers_a_failed_flush, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(objects_of_another_unit_are_refused_and_deleting_twice_is_harmless, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(setup_calls_while_units_are_open_are_refused_with_emisuse, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(stores_and_mappings_cannot_be_added_twice_or_to_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(bad_options_and_versions_are_refused_before_anything_runs, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(map_rejects_bad_identifiers_and_creates_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(map_rejects_malformed_descriptors_without_reading_past_them, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(values_are_bound_never_interpolated, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(text_values_are_taken_by_their_length, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(invalid_utf8_round_trips_on_sqlite_and_postgresql_refuses_it_writing_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(huge_blob_and_event_payload_round_trip_byte_exact, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(key_too_long_for_an_index_is_refused_as_einval_or_stored, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(negative_counts_and_oversized_lengths_are_refused_with_einval, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(relay_and_events_without_outbox_table_fail_clearly_and_write_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(transaction_control_through_exec_is_misuse_and_nothing_after_it_is_written, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(created_database_files_are_0600_whatever_the_umask, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(existing_database_file_keeps_its_mode, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(passwords_in_store_and_sink_urls_never_appear_in_messages, test_setup, test_teardown),
      cmocka_unit_test(postgresql_password_is_hidden_when_the_server_goes_away),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("misuse", tests, NULL, NULL);
}
