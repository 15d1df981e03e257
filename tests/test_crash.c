/*
 * test_crash.c - no crash may leave the stores of a unit disagreeing.
 *
 * For each named crash point of the commit protocol and each topology, a
 * forked child commits numbered units (a row in every store, one event)
 * with UOW_CRASH_AT set, and is killed (SIGKILL, from inside the library) at
 * that point. It reports every acknowledged unit through a pipe. Then
 * uow_recover() runs and the oracle checks, reading each database directly:
 * every unit is in all its stores or in none, and every acknowledged unit is
 * kept. Also: kill -9 from outside at random moments, in a loop; and a
 * PostgreSQL server restart in the middle of commits.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "multistore.h"
#include "support.h"

enum { UNITS_PER_CHILD = 4, MAX_UNITS = 40000 };

static bool acked[MAX_UNITS + 1];
static volatile sig_atomic_t stop_requested; /* the child: SIGTERM asks it to finish */

static void request_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* The child: commit units first..last, writing each acknowledged number to `fd`. */
static void child_commits(const ms_world *w, int fd, int64_t first, int64_t last, bool retry) {
  uow_env *env = ms_try_open(w, NULL, false);
  if (!env)
    _exit(4); /* a child never returns into cmocka */
  for (int64_t n = first; n <= last && !stop_requested; n++) {
    int rc = ms_unit(env, w, n);
    for (int tries = 0; rc && retry && tries < 200 && rc != UOW_EINDOUBT; tries++) {
      struct timespec pause = {0, 20 * 1000 * 1000};
      nanosleep(&pause, NULL); /* the server is restarting */
      rc = ms_unit(env, w, n);
    }
    if (rc == UOW_OK && write(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
      _exit(3);
  }
  uow_env_close(env);
}

/* Read acknowledgements until the child's end of the pipe closes, or `enough` came. */
static long read_some_acks(int fd, long enough) {
  long count = 0;
  int64_t n;
  ssize_t got;
  while (count < enough &&
         ((got = read(fd, &n, sizeof(n))) == (ssize_t)sizeof(n) || (got < 0 && errno == EINTR))) {
    if (got == (ssize_t)sizeof(n) && n >= 1 && n <= MAX_UNITS) {
      acked[n] = true;
      count++;
    }
  }
  return count;
}

static long read_acks(int fd) { return read_some_acks(fd, MAX_UNITS); }

/* Fork a child running child_commits; returns its pid, the read end in *fd. */
static pid_t spawn(const ms_world *w, const char *crash_at, int64_t first, int64_t last, bool retry,
                   int *fd) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    alarm(120); /* a child that hangs fails the test instead of the whole run */
    signal(SIGTERM, request_stop);
    if (crash_at)
      setenv("UOW_CRASH_AT", crash_at, 1);
    child_commits(w, fds[1], first, last, retry);
    _exit(0);
  }
  close(fds[1]);
  *fd = fds[0];
  return pid;
}

/* Recover, then check all-or-nothing for units 1..max and that nothing is in doubt. */
static void recover_and_check(const ms_world *w, int64_t max, const char *what, ms_counts *out) {
  uow_env *env = ms_open(w, NULL);
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  int rc = uow_recover(env, &report);
  if (rc)
    fail_msg("%s: uow_recover: %s", what, uow_env_errmsg(env));
  uow_env_close(env);
  ms_verify(w, acked, max, out);
  print_message("%s: %ld acknowledged, %ld complete, %ld absent, %ld torn, %ld lost; "
                "recovery: %zu in doubt, %zu committed, %zu rolled back\n",
                what, out->acknowledged, out->complete, out->absent, out->torn, out->lost,
                report.in_doubt, report.committed, report.rolled_back);
  assert_int_equal(out->torn, 0);
  assert_int_equal(out->lost, 0);
  assert_int_equal(ms_prepared(w), 0);
  assert_int_equal(ms_count_all(w, "uow_decision", "outcome = 'commit'"), 0);
}

/* A gid left by a crash names the library, the unit, the decider and the participant. */
static void check_gids(const ms_world *w) {
  for (size_t i = 0; i < w->nstores; i++) {
    if (strncmp(w->urls[i], "sqlite:", 7) == 0)
      continue;
    char where[256];
    snprintf(where, sizeof(where),
             "database = current_database() AND gid ~ '^uow1:[0-9a-f]{16}-[0-9]+:%s:%s$' "
             "AND length(gid) < 200",
             w->names[0], w->names[i]);
    long good = test_count_at(w->urls[i], "pg_prepared_xacts", where);
    long all = test_count_at(w->urls[i], "pg_prepared_xacts",
                             "database = current_database() AND gid LIKE 'uow1:%'");
    assert_int_equal(good, all);
  }
}

static void crash_at(ms_topology topology, const char *point) {
  memset(acked, 0, sizeof(acked));
  ms_world w;
  ms_prepare(&w, topology);
  uow_env_close(ms_open(&w, NULL)); /* the schema, before the child starts */
  /* The first unit commits whole (its cleanup runs in the second one's commit). */
  char spec[128];
  snprintf(spec, sizeof(spec), "%s@%d", point, strcmp(point, "during_cleanup") == 0 ? 1 : 2);
  int fd;
  pid_t pid = spawn(&w, spec, 1, UNITS_PER_CHILD, false, &fd);
  long acks = read_acks(fd);
  close(fd);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
    fail_msg("the child was to die at %s but %s %d", spec,
             WIFEXITED(status) ? "exited with" : "ended by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  assert_true(acks >= 1);
  check_gids(&w);
  ms_counts c;
  char what[160];
  snprintf(what, sizeof(what), "crash at %s", spec);
  recover_and_check(&w, UNITS_PER_CHILD, what, &c);
  /* The environment works again after recovery. */
  uow_env *env = ms_open(&w, NULL);
  assert_int_equal(ms_unit(env, &w, UNITS_PER_CHILD + 1), UOW_OK);
  uow_env_close(env);
  ms_cleanup(&w);
}

/* One test per topology and crash point (CTest lists each). */
#define CRASH_TEST(topo, TOPO, point)                                                              \
  static void crash_##topo##_##point(void **state) {                                               \
    (void)state;                                                                                   \
    crash_at(TOPO, #point);                                                                        \
  }

CRASH_TEST(sqlite_pg, MS_SQLITE_PG, before_prepare_1)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, after_prepare_1)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, before_decision)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, after_decision)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, before_commit_prepared_1)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, after_commit_prepared_1)
CRASH_TEST(sqlite_pg, MS_SQLITE_PG, during_cleanup)
CRASH_TEST(pg_pg, MS_PG_PG, before_prepare_1)
CRASH_TEST(pg_pg, MS_PG_PG, after_prepare_1)
CRASH_TEST(pg_pg, MS_PG_PG, before_decision)
CRASH_TEST(pg_pg, MS_PG_PG, after_decision)
CRASH_TEST(pg_pg, MS_PG_PG, before_commit_prepared_1)
CRASH_TEST(pg_pg, MS_PG_PG, after_commit_prepared_1)
CRASH_TEST(pg_pg, MS_PG_PG, during_cleanup)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, before_prepare_1)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, after_prepare_1)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, before_prepare_2)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, after_prepare_2)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, before_decision)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, after_decision)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, before_commit_prepared_1)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, after_commit_prepared_1)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, before_commit_prepared_2)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, after_commit_prepared_2)
CRASH_TEST(sqlite_pg_pg, MS_SQLITE_PG_PG, during_cleanup)

/* A crash inside recovery itself is settled by the next recovery. */
static void crash_during_recovery_is_settled_by_the_next_one(void **state) {
  (void)state;
  static const char *const points[] = {"recover_before_settle", "recover_after_fence",
                                       "recover_before_delete"};
  for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
    memset(acked, 0, sizeof(acked));
    ms_world w;
    ms_prepare(&w, MS_SQLITE_PG_PG);
    uow_env_close(ms_open(&w, NULL));
    /* Leave units in doubt: some decided (after_decision), one not (after_prepare). */
    int fd;
    pid_t pid = spawn(&w, "after_decision@2", 1, 3, false, &fd);
    read_acks(fd);
    close(fd);
    waitpid(pid, NULL, 0);
    pid = spawn(&w, "after_prepare_2@1", 10, 11, false, &fd);
    read_acks(fd);
    close(fd);
    waitpid(pid, NULL, 0);
    assert_true(ms_prepared(&w) > 0);
    /* A recovery that dies at the point. */
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      setenv("UOW_CRASH_AT", points[p], 1);
      uow_env *env = ms_try_open(&w, NULL, false);
      if (env)
        uow_recover(env, NULL);
      uow_env_close(env);
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ms_counts c;
    char what[128];
    snprintf(what, sizeof(what), "recovery killed at %s", points[p]);
    recover_and_check(&w, 11, what, &c);
    ms_cleanup(&w);
  }
}

/* kill -9 from outside, at random moments, again and again. */
static void kill_at_random_moments_never_tears_or_loses_a_unit(void **state) {
  (void)state;
  memset(acked, 0, sizeof(acked));
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env_close(ms_open(&w, NULL));
  unsigned seed = (unsigned)time(NULL);
  print_message("seed %u\n", seed);
  srand(seed);
  int64_t next = 1;
  long kills = 0;
  for (int round = 0; round < 25; round++) {
    int fd;
    pid_t pid = spawn(&w, NULL, next, next + 999, false, &fd);
    /* Every other round the random moment counts from the child's first
     * acknowledged unit rather than from its start: the kills then land among
     * commits however slowly the child starts (valgrind, a loaded machine),
     * and the check below that some units completed holds everywhere. */
    if (round % 2)
      read_some_acks(fd, 1);
    struct timespec pause = {0, (long)(20 + rand() % 180) * 1000 * 1000};
    nanosleep(&pause, NULL);
    kill(pid, SIGKILL);
    read_acks(fd);
    close(fd);
    int status;
    waitpid(pid, &status, 0);
    kills += WIFSIGNALED(status);
    next += 1000;
    /* Recovery between rounds, as a restarted service would run it. */
    uow_env *env = ms_open(&w, NULL);
    uow_recover_report report = UOW_RECOVER_REPORT_INIT;
    if (uow_recover(env, &report))
      fail_msg("uow_recover: %s", uow_env_errmsg(env));
    uow_env_close(env);
  }
  ms_counts c;
  char what[64];
  snprintf(what, sizeof(what), "%ld kills", kills);
  recover_and_check(&w, next - 1, what, &c);
  assert_true(c.complete > 0);
  /* Each kill may cut off at most one unit between its commit and its acknowledgement. */
  assert_true(c.complete - c.acknowledged <= kills);
  ms_cleanup(&w);
}

/* The PostgreSQL server restarts while units commit. */
static void server_restart_in_the_middle_of_commits_never_tears_or_loses_a_unit(void **state) {
  (void)state;
  memset(acked, 0, sizeof(acked));
  ms_world w;
  ms_prepare(&w, MS_SQLITE_PG_PG);
  uow_env_close(ms_open(&w, NULL));
  int fd;
  pid_t pid = spawn(&w, NULL, 1, MAX_UNITS, true, &fd);
  long before = read_some_acks(fd, 50); /* units are committing: restart now */
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "bash '%s/scripts/pg-test-server.sh' restart '%s' >/dev/null",
           getenv("UOW_SOURCE_DIR"), getenv("UOW_TEST_PG_DIR"));
  assert_int_equal(system(cmd), 0);
  long after = read_some_acks(fd, 50); /* and they go on after it */
  kill(pid, SIGTERM);
  after += read_acks(fd);
  close(fd);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  print_message("%ld units acknowledged before the restart, %ld during and after it\n", before,
                after);
  assert_int_equal(before, 50);
  assert_true(after >= 50);
  int64_t last = 0;
  for (int64_t n = 1; n <= MAX_UNITS; n++)
    if (acked[n])
      last = n;
  ms_counts c;
  recover_and_check(&w, last + 1, "server restart", &c);
  ms_cleanup(&w);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(crash_sqlite_pg_before_prepare_1),
      cmocka_unit_test(crash_sqlite_pg_after_prepare_1),
      cmocka_unit_test(crash_sqlite_pg_before_decision),
      cmocka_unit_test(crash_sqlite_pg_after_decision),
      cmocka_unit_test(crash_sqlite_pg_before_commit_prepared_1),
      cmocka_unit_test(crash_sqlite_pg_after_commit_prepared_1),
      cmocka_unit_test(crash_sqlite_pg_during_cleanup),
      cmocka_unit_test(crash_pg_pg_before_prepare_1),
      cmocka_unit_test(crash_pg_pg_after_prepare_1),
      cmocka_unit_test(crash_pg_pg_before_decision),
      cmocka_unit_test(crash_pg_pg_after_decision),
      cmocka_unit_test(crash_pg_pg_before_commit_prepared_1),
      cmocka_unit_test(crash_pg_pg_after_commit_prepared_1),
      cmocka_unit_test(crash_pg_pg_during_cleanup),
      cmocka_unit_test(crash_sqlite_pg_pg_before_prepare_1),
      cmocka_unit_test(crash_sqlite_pg_pg_after_prepare_1),
      cmocka_unit_test(crash_sqlite_pg_pg_before_prepare_2),
      cmocka_unit_test(crash_sqlite_pg_pg_after_prepare_2),
      cmocka_unit_test(crash_sqlite_pg_pg_before_decision),
      cmocka_unit_test(crash_sqlite_pg_pg_after_decision),
      cmocka_unit_test(crash_sqlite_pg_pg_before_commit_prepared_1),
      cmocka_unit_test(crash_sqlite_pg_pg_after_commit_prepared_1),
      cmocka_unit_test(crash_sqlite_pg_pg_before_commit_prepared_2),
      cmocka_unit_test(crash_sqlite_pg_pg_after_commit_prepared_2),
      cmocka_unit_test(crash_sqlite_pg_pg_during_cleanup),
      cmocka_unit_test(crash_during_recovery_is_settled_by_the_next_one),
      cmocka_unit_test(kill_at_random_moments_never_tears_or_loses_a_unit),
      cmocka_unit_test(server_restart_in_the_middle_of_commits_never_tears_or_loses_a_unit),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
