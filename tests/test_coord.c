/*
 * test_coord.c - units across several stores: two-phase commit with the
 * decision in the decider, refusals before anything is written,
 * uow_recover() and uow_env_status(), on a real SQLite file and the test
 * PostgreSQL server (two databases, and a second server without prepared
 * transactions).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "multistore.h"
#include "support.h"

/* A new row of `entity` in the unit. */
static void new_row(uow_unit *unit, const uow_entity *entity, int64_t id, char *note) {
  ms_row *row;
  UOK(unit, uow_new(unit, entity, (void **)&row));
  row->id = id;
  row->note = note;
}

static void commit_units(uow_env *env, const ms_world *w, int64_t first, int64_t last) {
  for (int64_t n = first; n <= last; n++) {
    int rc = ms_unit(env, w, n);
    if (rc)
      fail_msg("unit %lld: %s: %s", (long long)n, uow_strerror(rc), uow_env_errmsg(env));
  }
}

static void expect_all_or_nothing(const ms_world *w, int64_t max, long complete) {
  ms_counts c;
  ms_verify(w, NULL, max, &c);
  assert_int_equal(c.torn, 0);
  assert_int_equal(c.complete, complete);
  assert_int_equal(ms_prepared(w), 0);
}

static void stores_commit_together(ms_topology topology) {
  ms_world w;
  ms_prepare(&w, topology);
  uow_env *env = ms_open(&w, NULL);
  commit_units(env, &w, 1, 5);
  expect_all_or_nothing(&w, 5, 5);
  uow_env_close(env);
  ms_cleanup(&w);
}

static void sqlite_and_postgres_commit_together(void **state) {
  (void)state;
  stores_commit_together(MS_SQLITE_PG);
}

static void two_postgres_databases_commit_together(void **state) {
  (void)state;
  stores_commit_together(MS_PG_PG);
}

static void sqlite_and_two_postgres_databases_commit_together(void **state) {
  (void)state;
  stores_commit_together(MS_SQLITE_PG_PG);
}

static void events_of_a_multi_store_unit_go_to_the_decider_outbox(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG);
  uow_env *env = ms_open(&w, NULL);
  commit_units(env, &w, 1, 3);
  assert_int_equal(test_count_at(w.urls[0], "uow_outbox", "topic = 'ms.unit'"), 3);
  assert_int_equal(test_count_at(w.urls[1], "uow_outbox", NULL), 0);
  uow_env_close(env);
  ms_cleanup(&w);
}

static void decision_records_are_removed_once_every_store_finished(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env *env = ms_open(&w, NULL);
  commit_units(env, &w, 1, 1);
  /* The commit point: the decision is in the decider (SQLite) only. */
  assert_int_equal(test_count_at(w.urls[0], "uow_decision", "outcome = 'commit'"), 1);
  assert_int_equal(test_count_at(w.urls[1], "uow_decision", NULL), 0);
  /* Each later commit removes the decisions of units that finished before it. */
  commit_units(env, &w, 2, 6);
  assert_int_equal(test_count_at(w.urls[0], "uow_decision", NULL), 1);
  uow_env_close(env); /* removes the rest */
  assert_int_equal(ms_count_all(&w, "uow_decision", NULL), 0);
  expect_all_or_nothing(&w, 6, 6);
  ms_cleanup(&w);
}

static void configured_decider_decides_units_of_postgres_stores(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_PG_PG);
  uow_env *env = ms_open(&w, "pg2");
  commit_units(env, &w, 1, 1);
  assert_int_equal(test_count_at(w.urls[1], "uow_decision", "outcome = 'commit'"), 1);
  assert_int_equal(test_count_at(w.urls[0], "uow_decision", NULL), 0);
  assert_int_equal(test_count_at(w.urls[1], "uow_outbox", NULL), 1);
  uow_env_close(env);
  expect_all_or_nothing(&w, 1, 1);
  ms_cleanup(&w);
}

static void constraint_failure_in_one_store_writes_nothing_anywhere(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env *env = ms_open(&w, NULL);
  ms_pg_exec(w.urls[2], "INSERT INTO ms_c (id, note) VALUES (7, 'already here')");
  assert_int_equal(ms_unit(env, &w, 7), UOW_ECONSTRAINT);
  assert_contains(uow_env_errmsg(env), "");
  assert_int_equal(test_count_at(w.urls[0], "ms_a", NULL), 0);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", NULL), 0);
  assert_int_equal(test_count_at(w.urls[2], "ms_c", NULL), 1);
  assert_int_equal(ms_prepared(&w), 0);
  assert_int_equal(ms_count_all(&w, "uow_outbox", NULL), 0);
  commit_units(env, &w, 8, 8); /* the environment still works */
  uow_env_close(env);
  ms_cleanup(&w);
}

/* Rows ids first..first+rows-1 in every store of the world, made store by
 * store in turn and handed over with uow_send every 500; commit. A row the
 * server refuses fails the next uow_send or the commit: its code. */
static int send_and_commit(uow_env *env, const ms_world *w, int64_t first, int rows) {
  static char note[] = "sent";
  uow_unit *unit = NULL;
  EOK(env, uow_begin(env, &unit));
  int rc = UOW_OK;
  for (int i = 0; i < rows && !rc; i++) {
    for (size_t s = 0; s < w->nstores; s++)
      new_row(unit, w->entities[s], first + i, note);
    if ((i + 1) % 500 == 0)
      rc = uow_send(unit);
  }
  if (!rc)
    rc = uow_commit(unit);
  uow_end(unit);
  return rc;
}

/* Objects uow_send left in flight on two PostgreSQL databases commit with
 * the SQLite ones (which wait for the commit) in one two-phase commit; a
 * row one database refuses writes nothing anywhere. */
static void sent_objects_commit_atomically_across_stores(void **state) {
  (void)state;
  enum { ROWS = 1500 };
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env *env = ms_open(&w, NULL);
  assert_int_equal(send_and_commit(env, &w, 1, ROWS), UOW_OK);
  for (size_t s = 0; s < w.nstores; s++)
    assert_int_equal(test_count_at(w.urls[s], w.entities[s]->table, NULL), ROWS);
  ms_pg_exec(w.urls[2], "INSERT INTO ms_c (id, note) VALUES (2700, 'already here')");
  assert_int_equal(send_and_commit(env, &w, 2001, ROWS), UOW_ECONSTRAINT);
  assert_int_equal(test_count_at(w.urls[0], "ms_a", "id > 2000"), 0);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", "id > 2000"), 0);
  assert_int_equal(test_count_at(w.urls[2], "ms_c", "id > 2000"), 1);
  assert_int_equal(ms_prepared(&w), 0);
  uow_env_close(env);
  ms_cleanup(&w);
}

static void failed_prepare_rolls_back_every_store(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env *env = ms_open(&w, NULL);
  /* A deferred constraint is checked by PREPARE TRANSACTION itself. */
  ms_pg_exec(w.urls[2], "ALTER TABLE ms_c ADD CONSTRAINT ms_c_note_once UNIQUE (note) "
                        "DEFERRABLE INITIALLY DEFERRED");
  ms_pg_exec(w.urls[2], "INSERT INTO ms_c (id, note) VALUES (1000, 'unit 5')");
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  for (size_t i = 0; i < w.nstores; i++)
    new_row(unit, w.entities[i], 5, "unit 5");
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  assert_contains(uow_errmsg(unit), "prepare failed: store 'pg2'");
  assert_contains(uow_errmsg(unit), "ms_c_note_once");
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count_at(w.urls[0], "ms_a", NULL), 0);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", NULL), 0);
  assert_int_equal(test_count_at(w.urls[2], "ms_c", NULL), 1);
  assert_int_equal(ms_prepared(&w), 0);
  uow_env_close(env);
  ms_cleanup(&w);
}

static const uow_column plain_columns[] = {
    UOW_COLUMN(ms_row, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(ms_row, note, UOW_TEXT, 0),
};
static const uow_entity left_entity = UOW_ENTITY(ms_row, "left_rows", plain_columns);
static const uow_entity right_entity = UOW_ENTITY(ms_row, "right_rows", plain_columns);

static void two_sqlite_stores_in_one_unit_are_refused_before_writing(void **state) {
  (void)state;
  char left[1100], right[1100];
  snprintf(left, sizeof(left), "sqlite:%s/left.db", getenv("UOW_TEST_TMPDIR"));
  snprintf(right, sizeof(right), "sqlite:%s/right.db", getenv("UOW_TEST_TMPDIR"));
  uow_env *env;
  assert_int_equal(uow_env_open(NULL, &env), UOW_OK);
  EOK(env, uow_env_add_store(env, "left", left));
  EOK(env, uow_env_add_store(env, "right", right));
  EOK(env, uow_env_map(env, &left_entity, "left"));
  EOK(env, uow_env_map(env, &right_entity, "right"));
  EOK(env, uow_env_create_schema(env));

  /* At commit. */
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 1, "left");
  new_row(unit, &right_entity, 1, "right");
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  assert_contains(uow_errmsg(unit), "'left' and 'right'");
  assert_contains(uow_errmsg(unit), "neither can prepare");
  assert_contains(uow_errmsg(unit), "split the work");
  uow_end(unit);

  /* At an explicit flush, before either store sees a statement. */
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 2, "left");
  new_row(unit, &right_entity, 2, "right");
  UCODE(unit, UOW_EMISUSE, uow_flush(unit));
  uow_end(unit);

  /* At uow_exec on the second store after a write to the first. */
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 3, "left");
  UOK(unit, uow_flush(unit));
  UCODE(unit, UOW_EMISUSE, uow_exec(unit, "right", "DELETE FROM right_rows", NULL, 0));
  uow_end(unit);

  uow_env_close(env);
  assert_int_equal(test_count_at(left, "left_rows", NULL), 0);
  assert_int_equal(test_count_at(right, "right_rows", NULL), 0);
}

/* ---- a server with max_prepared_transactions = 0 ---- */

static char no_prepare_dir[1024];

static int start_no_prepare_server(void **state) {
  (void)state;
  snprintf(no_prepare_dir, sizeof(no_prepare_dir), "%s/pg0", getenv("UOW_TEST_TMPDIR"));
  test_server_script("pg", "start", no_prepare_dir, "PG_MAX_PREPARED=0", NULL, 0);
  return 0;
}

static int stop_no_prepare_server(void **state) {
  (void)state;
  test_server_script("pg", "stop", no_prepare_dir, "", NULL, 0);
  return 0;
}

static void server_without_prepared_transactions_decides_or_is_refused_clearly(void **state) {
  (void)state;
  char url[2048];
  test_server_script("pg", "url", no_prepare_dir, "", url, sizeof(url));
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG);
  uow_env *env = ms_open(&w, NULL);
  EOK(env, uow_env_add_store(env, "pg0", url));
  EOK(env, uow_env_map(env, &left_entity, "pg0"));
  EOK(env, uow_env_create_schema(env));
  uow_unit *unit;

  /* Alone, it serves units as usual. */
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 1, "alone");
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  /* Beside SQLite, neither can prepare: refused before anything is sent. */
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 2, "with sqlite");
  new_row(unit, w.entities[0], 2, "with pg0");
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  assert_contains(uow_errmsg(unit), "max_prepared_transactions = 0");
  assert_contains(uow_errmsg(unit), "'lite'");
  uow_end(unit);
  assert_int_equal(test_count_at(url, "left_rows", NULL), 1);
  assert_int_equal(test_count_at(w.urls[0], "ms_a", NULL), 0);

  /* Beside a server that can prepare, it decides the unit. */
  EOK(env, uow_begin(env, &unit));
  new_row(unit, &left_entity, 3, "with pg1");
  new_row(unit, w.entities[1], 3, "with pg0");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count_at(url, "left_rows", "id = 3"), 1);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", "id = 3"), 1);
  assert_int_equal(ms_prepared(&w), 0);
  uow_env_close(env);
  ms_cleanup(&w);
}

/* ---- recovery ---- */

/* Leave a prepared transaction in pg1 holding row `id`, as a crash would. */
static void leave_prepared(const ms_world *w, const char *gid, int id) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "BEGIN; INSERT INTO ms_b (id, note) VALUES (%d, 'in doubt'); PREPARE TRANSACTION '%s'",
           id, gid);
  ms_pg_exec(w->urls[1], sql);
}

static void recover_commits_decided_units_and_rolls_back_undecided_ones(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG);
  uow_env *env = ms_open(&w, NULL);
  /* Unit 1 reached its commit point: row and decision in SQLite. Unit 2 did not. */
  leave_prepared(&w, "uow1:00000000feedbeef-1:lite:pg1", 1);
  leave_prepared(&w, "uow1:00000000feedbeef-2:lite:pg1", 2);
  test_sqlite_exec(w.urls[0],
                   "INSERT INTO ms_a (id, note) VALUES (1, 'decided');"
                   "INSERT INTO uow_decision (unit_id, outcome, participants, created_at) "
                   "VALUES ('00000000feedbeef-1', 'commit', 'pg1', 0)");

  uow_store_status status[2];
  size_t count = 0;
  EOK(env, uow_env_status(env, status, 2, &count));
  assert_int_equal(count, 2);
  assert_string_equal(status[0].name, "lite");
  assert_false(status[0].can_prepare);
  assert_int_equal(status[0].decisions, 1);
  assert_true(status[1].reachable);
  assert_true(status[1].can_prepare);
  assert_int_equal(status[1].in_doubt, 2);

  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  EOK(env, uow_recover(env, &report));
  assert_int_equal(report.in_doubt, 2);
  assert_int_equal(report.committed, 1);
  assert_int_equal(report.rolled_back, 1);
  assert_int_equal(report.fenced, 1);
  assert_int_equal(report.decisions_removed, 1);
  assert_int_equal(report.skipped, 0);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", "id = 1"), 1);
  assert_int_equal(test_count_at(w.urls[1], "ms_b", "id = 2"), 0);
  assert_int_equal(ms_prepared(&w), 0);
  /* The abort record stays: a committer that wakes up late is still fenced. */
  assert_int_equal(test_count_at(w.urls[0], "uow_decision",
                                 "unit_id = '00000000feedbeef-2' AND outcome = 'abort'"),
                   1);
  assert_int_equal(test_count_at(w.urls[0], "uow_decision", "outcome = 'commit'"), 0);

  /* Nothing is left to do. */
  EOK(env, uow_recover(env, &report));
  assert_int_equal(report.in_doubt, 0);
  assert_int_equal(report.committed + report.rolled_back + report.fenced, 0);
  EOK(env, uow_env_status(env, status, 2, &count));
  assert_int_equal(status[1].in_doubt, 0);
  uow_env_close(env);
  ms_cleanup(&w);
}

static void recover_leaves_units_of_an_unknown_decider_and_says_so(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG);
  uow_env *env = ms_open(&w, NULL);
  leave_prepared(&w, "uow1:00000000feedbeef-3:elsewhere:pg1", 3);
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  assert_int_equal(uow_recover(env, &report), UOW_EIO);
  assert_contains(uow_env_errmsg(env), "'elsewhere'");
  assert_int_equal(report.in_doubt, 1);
  assert_int_equal(report.skipped, 1);
  assert_int_equal(ms_prepared(&w), 1); /* untouched */
  uow_env_close(env);
  ms_pg_exec(w.urls[1], "ROLLBACK PREPARED 'uow1:00000000feedbeef-3:elsewhere:pg1'");
  ms_cleanup(&w);
}

static void recover_refuses_a_report_of_another_version(void **state) {
  (void)state;
  uow_env *env;
  assert_int_equal(uow_env_open(NULL, &env), UOW_OK);
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  report.version = 99;
  assert_int_equal(uow_recover(env, &report), UOW_EINVAL);
  assert_contains(uow_env_errmsg(env), "version");
  assert_int_equal(uow_recover(NULL, NULL), UOW_EINVAL);
  EOK(env, uow_recover(env, NULL)); /* no stores: nothing to do */
  uow_env_close(env);
}

/* ---- the decider's COMMIT cut off ---- */

static void lost_decider_commit_is_in_doubt_and_recovery_makes_it_all_or_nothing(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_PG_PG);
  uow_env *env = ms_open(&w, NULL); /* pg1 decides */
  /* The decider's session dies inside COMMIT: a deferred trigger ends it. */
  ms_pg_exec(w.urls[0],
             "CREATE OR REPLACE FUNCTION ms_die() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;"
             "CREATE CONSTRAINT TRIGGER ms_die AFTER INSERT ON ms_b DEFERRABLE INITIALLY "
             "DEFERRED FOR EACH ROW WHEN (NEW.id = 9) EXECUTE FUNCTION ms_die()");
  assert_int_equal(ms_unit(env, &w, 9), UOW_EINDOUBT);
  assert_contains(uow_env_errmsg(env), "");
  assert_int_equal(ms_prepared(&w), 1); /* pg2 waits for recovery */
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  EOK(env, uow_recover(env, &report));
  assert_int_equal(report.in_doubt, 1);
  assert_int_equal(report.rolled_back + report.committed, 1);
  expect_all_or_nothing(&w, 9, 0);
  ms_pg_exec(w.urls[0], "DROP TRIGGER ms_die ON ms_b");
  commit_units(env, &w, 10, 10);
  uow_env_close(env);
  ms_cleanup(&w);
}

/* ---- recovery beside live units ---- */

typedef struct live {
  uow_env *env;
  const ms_world *w;
  int64_t units;
  volatile int done;
  int failures;
  long recoveries;
  char failure[1024]; /* the first failure's message */
} live;

typedef struct numbered {
  const ms_world *w;
  int64_t n;
} numbered;

static int write_numbered(uow_unit *unit, void *arg) {
  numbered *job = arg;
  char note[64];
  snprintf(note, sizeof(note), "unit %lld", (long long)job->n);
  for (size_t i = 0; i < job->w->nstores; i++) {
    ms_row *row;
    int rc = uow_new(unit, job->w->entities[i], (void **)&row);
    if (rc)
      return rc;
    row->id = job->n;
    row->note = uow_strdup(unit, note);
  }
  return UOW_OK;
}

static void *commit_loop(void *arg) {
  live *l = arg;
  uow_run_options opts = UOW_RUN_OPTIONS_INIT;
  opts.max_attempts = 50;
  for (int64_t n = 1; n <= l->units; n++) {
    numbered job = {l->w, n};
    int rc = uow_run(l->env, write_numbered, &job, &opts);
    /* Not uow_env_errmsg() here: the recovery threads write it meanwhile.
     * The test reads it once they are joined. */
    if (rc != UOW_OK && !l->failures++)
      snprintf(l->failure, sizeof(l->failure), "unit %lld: %s", (long long)n, uow_strerror(rc));
  }
  __atomic_store_n(&l->done, 1, __ATOMIC_RELEASE); /* the recovery threads poll it */
  return NULL;
}

static void *recover_loop(void *arg) {
  live *l = arg;
  while (!__atomic_load_n(&l->done, __ATOMIC_ACQUIRE)) {
    uow_recover_report report = UOW_RECOVER_REPORT_INIT;
    uow_recover(l->env, &report); /* may meet busy stores; the final run must succeed */
    __atomic_add_fetch(&l->recoveries, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static void recovery_runs_beside_live_units_and_another_recovery(void **state) {
  (void)state;
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env *env = ms_open(&w, NULL);
  live l = {env, &w, 120, 0, 0, 0, ""};
  pthread_t committer, r1, r2;
  assert_int_equal(pthread_create(&committer, NULL, commit_loop, &l), 0);
  assert_int_equal(pthread_create(&r1, NULL, recover_loop, &l), 0);
  assert_int_equal(pthread_create(&r2, NULL, recover_loop, &l), 0);
  pthread_join(committer, NULL);
  pthread_join(r1, NULL);
  pthread_join(r2, NULL);
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  EOK(env, uow_recover(env, &report));
  print_message("%lld units committed beside %ld recovery runs, %d failed\n", (long long)l.units,
                l.recoveries, l.failures);
  if (l.failures)
    fail_msg("%d units failed; the first: %s (the environment's last message: %s)", l.failures,
             l.failure, uow_env_errmsg(env));
  expect_all_or_nothing(&w, l.units, l.units);
  uow_env_close(env);
  ms_cleanup(&w);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sqlite_and_postgres_commit_together),
      cmocka_unit_test(two_postgres_databases_commit_together),
      cmocka_unit_test(sqlite_and_two_postgres_databases_commit_together),
      cmocka_unit_test(sent_objects_commit_atomically_across_stores),
      cmocka_unit_test(events_of_a_multi_store_unit_go_to_the_decider_outbox),
      cmocka_unit_test(decision_records_are_removed_once_every_store_finished),
      cmocka_unit_test(configured_decider_decides_units_of_postgres_stores),
      cmocka_unit_test(constraint_failure_in_one_store_writes_nothing_anywhere),
      cmocka_unit_test(failed_prepare_rolls_back_every_store),
      cmocka_unit_test(two_sqlite_stores_in_one_unit_are_refused_before_writing),
      cmocka_unit_test_setup_teardown(server_without_prepared_transactions_decides_or_is_refused_clearly, start_no_prepare_server, stop_no_prepare_server),
      cmocka_unit_test(recover_commits_decided_units_and_rolls_back_undecided_ones),
      cmocka_unit_test(recover_leaves_units_of_an_unknown_decider_and_says_so),
      cmocka_unit_test(recover_refuses_a_report_of_another_version),
      cmocka_unit_test(lost_decider_commit_is_in_doubt_and_recovery_makes_it_all_or_nothing),
      cmocka_unit_test(recovery_runs_beside_live_units_and_another_recovery),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("coord", tests, NULL, NULL);
}
