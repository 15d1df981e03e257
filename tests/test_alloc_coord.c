/*
 * test_alloc_coord.c - allocation-failure torture of units across stores
 * (tests/multistore.h worlds on the test PostgreSQL server):
 *
 *  - two-phase commit with SQLite deciding (SQLite + PostgreSQL) and with
 *    PostgreSQL deciding (PostgreSQL + PostgreSQL): open, schema, status,
 *    then two units, each updating a row in every store, flushing, inserting
 *    a row in every store (the decider's last, so that it rides with the
 *    decision) and emitting an event; the second unit's commit removes the
 *    first's decision record; close (which settles what a lost commit left);
 *  - uow_recover() with two units in doubt: one left by a process killed at
 *    the crash point after_decision (UOW_CRASH_AT), one prepared by hand as a
 *    process killed right after its PREPARE leaves it.
 *
 * Each run must return 0, UOW_ENOMEM or UOW_EINDOUBT (a decider's commit
 * that went through but whose reply could not be read), with a message, and
 * leak nothing (torture.c fails each allocation in turn). After each run, a
 * recovery without failures must leave every unit in all its stores or in
 * none, nothing prepared and no decision record of a finished unit; a unit
 * whose commit returned 0 is in all of them, one whose commit failed
 * otherwise, or was not reached, in none; row 0 says the same in every store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multistore.h"
#include "support.h"
#include "torture.h"

enum { MAX_UNITS = 4096 };

typedef struct coord_world {
  ms_world w;
  uow_env *clean; /* an environment on the world that settles what a run left */
  ms_topology topology;
  int64_t unit;   /* the current run's last unit */
  int commits[2]; /* the codes of its units' commits */
  char note[32];  /* what row 0 says in every store: the last complete unit's note */
  bool acked[MAX_UNITS + 1];
} coord_world;

/* Open an environment on the world with its tables mapped and the schema made. */
static int open_world(const ms_world *w, uow_env **env, char *msg, size_t cap) {
  int rc = uow_env_open(NULL, env);
  if (rc) {
    snprintf(msg, cap, "uow_env_open: %s", uow_strerror(rc));
    return rc;
  }
  for (size_t i = 0; !rc && i < w->nstores; i++)
    if (!(rc = uow_env_add_store(*env, w->names[i], w->urls[i])))
      rc = uow_env_map(*env, w->entities[i], w->names[i]);
  if (!rc)
    rc = uow_env_create_schema(*env);
  if (rc)
    TORTURE_SAY("opening", uow_env_errmsg(*env));
  return rc;
}

/* Settle what a run left, without failures. */
static void recover_cleanly(coord_world *c) {
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  if (uow_recover(c->clean, &report))
    fail_msg("uow_recover: %s", uow_env_errmsg(c->clean));
}

/* What store i holds, in one query: rows `a` and `b` (0 or 1 each), commit
 * decisions, prepared transactions of libuow, and the note of row 0. */
typedef struct store_view {
  long a, b, decisions, prepared;
  char note[32];
} store_view;

static void view_store(const ms_world *w, size_t i, int64_t a, int64_t b, store_view *v) {
  const char *t = w->entities[i]->table;
  bool pg = strncmp(w->urls[i], "sqlite:", 7) != 0;
  char sql[1024], buf[256];
  snprintf(sql, sizeof(sql),
           "SELECT (SELECT count(*) FROM %s WHERE id = %lld) || ',' || "
           "(SELECT count(*) FROM %s WHERE id = %lld) || ',' || "
           "(SELECT count(*) FROM uow_decision WHERE outcome = 'commit') || ',' || %s || ',' || "
           "(SELECT note FROM %s WHERE id = 0)",
           t, (long long)a, t, (long long)b,
           pg ? "(SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'uow1:%' AND "
                "database = current_database())"
              : "0",
           t);
  if (!torture_text(w->urls[i], sql, buf, sizeof(buf)) ||
      sscanf(buf, "%ld,%ld,%ld,%ld,%31[^\n]", &v->a, &v->b, &v->decisions, &v->prepared, v->note) !=
          5)
    fail_msg("cannot read store %s: \"%s\"", w->names[i], buf);
}

/* After a recovery without failures: nothing prepared or decided is left,
 * unit `a` is in every store or none (all of them when `a_in`, none when
 * `a_out`), the same for `b`, and row 0 holds the same note in every store:
 * that of the last complete unit, when the units change it (`row0`). */
static bool world_consistent(coord_world *c, int64_t a, bool a_in, bool a_out, int64_t b, bool b_in,
                             bool b_out, bool row0) {
  recover_cleanly(c);
  bool ok = true;
  long in_a = 0, in_b = 0;
  store_view views[MS_STORES_MAX];
  for (size_t i = 0; i < c->w.nstores; i++) {
    store_view *v = &views[i];
    view_store(&c->w, i, a, b, v);
    in_a += v->a;
    in_b += v->b;
    if (v->decisions || v->prepared) {
      fprintf(stderr, "after recovery, store %s holds %ld prepared, %ld commit decisions\n",
              c->w.names[i], v->prepared, v->decisions);
      ok = false;
    }
  }
  long all = (long)c->w.nstores;
  if ((in_a && in_a != all) || (a_in && in_a != all) || (a_out && in_a)) {
    fprintf(stderr, "unit %lld is in %ld of %ld stores\n", (long long)a, in_a, all);
    ok = false;
  }
  if ((in_b && in_b != all) || (b_in && in_b != all) || (b_out && in_b)) {
    fprintf(stderr, "unit %lld is in %ld of %ld stores\n", (long long)b, in_b, all);
    ok = false;
  }
  if (row0 && in_a == all)
    snprintf(c->note, sizeof(c->note), "unit %lld", (long long)a);
  if (row0 && in_b == all)
    snprintf(c->note, sizeof(c->note), "unit %lld", (long long)b);
  for (size_t i = 0; i < c->w.nstores; i++)
    if (strcmp(views[i].note, c->note) != 0) {
      fprintf(stderr, "row 0 of %s says \"%s\", not \"%s\"\n", c->w.entities[i]->table,
              views[i].note, c->note);
      ok = false;
    }
  return ok;
}

static void world_setup(void *ctx) {
  coord_world *c = ctx;
  ms_prepare(&c->w, c->topology);
  c->clean = ms_open(&c->w, NULL); /* and the schema */
  for (size_t i = 0; i < c->w.nstores; i++) {
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO %s (id, note) VALUES (0, 'start')",
             c->w.entities[i]->table);
    torture_exec(c->w.urls[i], sql);
  }
  snprintf(c->note, sizeof(c->note), "start");
}

/* At the end, every unit so far: in all its stores or none, none acknowledged lost. */
static void world_teardown(void *ctx) {
  coord_world *c = ctx;
  ms_counts counts;
  ms_verify(&c->w, c->acked, c->unit, &counts);
  if (counts.torn || counts.lost)
    fail_msg("%ld units torn, %ld acknowledged units lost", counts.torn, counts.lost);
  uow_env_close(c->clean);
  ms_cleanup(&c->w);
}

/* ---- scenario: a unit across stores ---- */

static void unit_prepare(void *ctx, long point) {
  coord_world *c = ctx;
  if (2 * point > MAX_UNITS)
    fail_msg("more than %d failure points", MAX_UNITS / 2);
  c->unit = 2 * point;
  c->commits[0] = c->commits[1] = TORTURE_NOT_REACHED;
}

/* Unit n: row 0 of every store changed, then row n of every store but the
 * decider (the first) sent by a flush; the decider's row n is left for the
 * commit, with the decision. */
static int unit_across(coord_world *c, uow_env *env, int64_t n, int *commit, char *msg,
                       size_t cap) {
  const ms_world *w = &c->w;
  uow_unit *unit = NULL;
  char note[32];
  snprintf(note, sizeof(note), "unit %lld", (long long)n);
  int rc = UOW_OK;
  ENV_STEP(env, uow_begin(env, &unit));
  int64_t zero = 0;
  for (size_t i = 0; !rc && i < w->nstores; i++) {
    ms_row *row = NULL;
    UNIT_STEP(unit, uow_get(unit, w->entities[i], &zero, (void **)&row));
    UNIT_DUP(unit, row->note, note);
  }
  for (size_t i = w->nstores; !rc && i-- > 0;) {
    ms_row *row = NULL;
    if (i == 0)
      UNIT_STEP(unit, uow_flush(unit));
    UNIT_STEP(unit, uow_new(unit, w->entities[i], (void **)&row));
    if (!rc)
      row->id = n;
    UNIT_DUP(unit, row->note, note);
  }
  UNIT_STEP(unit, uow_emit(unit, "ms.unit", note, note, strlen(note)));
  if (!rc) {
    rc = *commit = uow_commit(unit);
    if (rc)
      TORTURE_SAY("uow_commit", uow_errmsg(unit));
  }
  uow_end(unit);
  return rc;
}

/* Two units on one environment: the second's commit removes the first's
 * decision record in its decider transaction. */
static int unit_run(void *ctx, char *msg, size_t cap) {
  coord_world *c = ctx;
  uow_env *env = NULL;
  int rc = open_world(&c->w, &env, msg, cap);
  uow_store_status status[MS_STORES_MAX];
  size_t count = 0;
  ENV_STEP(env, uow_env_status(env, status, MS_STORES_MAX, &count));
  for (size_t i = 0; !rc && i < count; i++)
    if (!status[i].reachable || status[i].in_doubt != 0) {
      snprintf(msg, cap, "status of %s: reachable %d, %lld in doubt: %s", status[i].name,
               status[i].reachable, (long long)status[i].in_doubt, status[i].error);
      rc = TORTURE_UNEXPECTED;
    }
  for (int k = 0; !rc && k < 2; k++)
    rc = unit_across(c, env, c->unit - 1 + k, &c->commits[k], msg, cap);
  uow_env_close(env);
  return rc;
}

static bool unit_check(void *ctx, int rc, long point) {
  coord_world *c = ctx;
  (void)rc;
  (void)point;
  bool in[2], out[2];
  for (int k = 0; k < 2; k++) {
    c->acked[c->unit - 1 + k] = c->commits[k] == UOW_OK;
    in[k] = c->commits[k] == UOW_OK;
    out[k] = !in[k] && c->commits[k] != UOW_EINDOUBT;
  }
  return world_consistent(c, c->unit - 1, in[0], out[0], c->unit, in[1], out[1], true);
}

static bool accepts_indoubt(void *ctx, int rc) {
  (void)ctx;
  return rc == UOW_EINDOUBT;
}

static void two_phase_scenario(ms_topology topology, const char *name) {
  coord_world *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->topology = topology;
  torture_scenario s = {
      name, c, world_setup, world_teardown, unit_prepare, unit_run, unit_check, accepts_indoubt, 0};
  torture_run(&s);
  free(c);
}

static void two_phase_sqlite_pg_is_all_or_nothing_at_each_allocation(void **state) {
  (void)state;
  two_phase_scenario(MS_SQLITE_PG, "2pc sqlite+pg");
}

static void two_phase_pg_pg_is_all_or_nothing_at_each_allocation(void **state) {
  (void)state;
  two_phase_scenario(MS_PG_PG, "2pc pg+pg");
}

/* ---- scenario: recovery of units in doubt ---- */

/* A process that commits unit n and is killed at crash point `at`. */
static void crash_unit(coord_world *c, int64_t n, const char *at) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(60);
    setenv("UOW_CRASH_AT", at, 1);
    uow_env *env = ms_try_open(&c->w, NULL, false);
    if (env)
      ms_unit(env, &c->w, n);
    _exit(3); /* not reached when the crash point ends it */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
    fail_msg("the process committing unit %lld was to die at %s", (long long)n, at);
}

/* Unit n prepared in pg1 and no more: what a process killed right after its
 * PREPARE TRANSACTION leaves (SQLite, the decider, holds nothing of it).
 * The gid is made as coord.c makes it. */
static void leave_prepared(coord_world *c, int64_t n) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "BEGIN; INSERT INTO ms_b (id, note) VALUES (%lld, 'unit %lld'); "
           "PREPARE TRANSACTION 'uow1:00000000a110c000-%lld:lite:pg1'",
           (long long)n, (long long)n, (long long)n);
  torture_exec(c->w.urls[1], sql);
}

/* Units 2p-1 (decided: commit) and 2p (prepared only) in doubt. */
static void doubt_prepare(void *ctx, long point) {
  coord_world *c = ctx;
  if (2 * point > MAX_UNITS)
    fail_msg("more than %d failure points", MAX_UNITS / 2);
  crash_unit(c, 2 * point - 1, "after_decision");
  leave_prepared(c, 2 * point);
  c->unit = 2 * point;
}

static int doubt_run(void *ctx, char *msg, size_t cap) {
  coord_world *c = ctx;
  uow_env *env = NULL;
  int rc = open_world(&c->w, &env, msg, cap);
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  ENV_STEP(env, uow_recover(env, &report));
  if (!rc && (report.in_doubt != 2 || report.committed != 1 || report.rolled_back != 1)) {
    snprintf(msg, cap, "recover found %zu in doubt, committed %zu, rolled back %zu",
             report.in_doubt, report.committed, report.rolled_back);
    rc = TORTURE_UNEXPECTED;
  }
  uow_store_status status[MS_STORES_MAX];
  size_t count = 0;
  ENV_STEP(env, uow_env_status(env, status, MS_STORES_MAX, &count));
  uow_env_close(env);
  return rc;
}

/* The decided unit committed whole; the other one is gone. */
static bool doubt_check(void *ctx, int rc, long point) {
  coord_world *c = ctx;
  (void)rc;
  (void)point;
  return world_consistent(c, c->unit - 1, true, false, c->unit, false, true, false);
}

static void recovery_settles_units_in_doubt_at_each_allocation(void **state) {
  (void)state;
  coord_world *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->topology = MS_SQLITE_PG;
  torture_scenario s = {"recover sqlite+pg",
                        c,
                        world_setup,
                        world_teardown,
                        doubt_prepare,
                        doubt_run,
                        doubt_check,
                        NULL,
                        0};
  torture_run(&s);
  free(c);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(two_phase_sqlite_pg_is_all_or_nothing_at_each_allocation),
      cmocka_unit_test(two_phase_pg_pg_is_all_or_nothing_at_each_allocation),
      cmocka_unit_test(recovery_settles_units_in_doubt_at_each_allocation),
  };
  return cmocka_run_group_tests_name("alloc_coord", tests, NULL, NULL);
}
