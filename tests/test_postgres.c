/*
 * test_postgres.c - what only a server store shows: round trips per unit,
 * the classic lost-update race under REPEATABLE READ, a connection lost
 * inside a unit, and a pooled connection whose backend died between units.
 * Runs against the PostgreSQL 15 that the CTest fixture starts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "core/core.h"
#include "support.h"

static int64_t seed_course(uow_env *env, const char *title, int64_t seats) {
  uow_unit *unit;
  course *c;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = (char *)title;
  c->seats = seats;
  UOK(unit, uow_commit(unit));
  int64_t id = c->id;
  uow_end(unit);
  return id;
}

/* The round trips a connection has made so far (the store counts them). */
static uint64_t round_trips(uow_unit *unit, uow_store_conn **conn) {
  uow_unit_store *us = &unit->stores[0];
  *conn = us->conn;
  return us->store->ops->round_trips(us->conn);
}

static void flush_and_commit_of_inserts_cost_one_round_trip(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Pipelines", 10);
  uow_unit *unit;
  EOK(w->env, uow_begin(w->env, &unit));
  course *c;
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c)); /* joins the store */
  uow_store_conn *conn;
  uint64_t before = round_trips(unit, &conn);
  for (int i = 0; i < 3; i++) {
    enrollment *e;
    UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
    e->course = c;
    e->learner = "learner";
  }
  UOK(unit, uow_emit(unit, "enrollment.created", NULL, "{}", 2));
  UOK(unit, uow_commit(unit));
  /* The connection went back to the pool, open: its counter is still readable. */
  uint64_t after = unit->stores[0].store->ops->round_trips(conn);
  uow_end(unit);
  printf("three inserts, one outbox row and COMMIT: %llu round trip(s)\n",
         (unsigned long long)(after - before));
  assert_int_equal(after - before, 1);
  assert_int_equal(test_count(w->env, "enrollments", NULL), 3);
}

typedef struct racer {
  uow_env *env;
  int64_t id;
  int64_t seats;
  pthread_barrier_t *loaded;
  pthread_barrier_t *first_done;
  bool first;
  int rc;
  char message[1024];
} racer;

static void *race(void *arg) {
  racer *r = arg;
  uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
  opts.isolation = UOW_ISOLATION_REPEATABLE_READ;
  uow_unit *unit = NULL;
  course *c = NULL;
  r->rc = uow_begin_ex(r->env, &opts, &unit);
  if (!r->rc)
    r->rc = uow_get(unit, &course_entity, &r->id, (void **)&c);
  pthread_barrier_wait(r->loaded); /* both units have read version 1 */
  if (!r->first)
    pthread_barrier_wait(r->first_done);
  if (!r->rc) {
    c->seats = r->seats;
    r->rc = uow_commit(unit);
  }
  snprintf(r->message, sizeof(r->message), "%s", uow_errmsg(unit));
  uow_end(unit);
  if (r->first)
    pthread_barrier_wait(r->first_done);
  return NULL;
}

static void second_repeatable_read_writer_gets_conflict_and_one_change_is_stored(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Race", 10);
  pthread_barrier_t loaded, first_done;
  pthread_barrier_init(&loaded, NULL, 2);
  pthread_barrier_init(&first_done, NULL, 2);
  racer a = {w->env, id, 7, &loaded, &first_done, true, 0, ""};
  racer b = {w->env, id, 3, &loaded, &first_done, false, 0, ""};
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_barrier_destroy(&loaded);
  pthread_barrier_destroy(&first_done);
  if (a.rc != UOW_OK)
    fail_msg("first writer: %d: %s", a.rc, a.message);
  if (b.rc != UOW_ECONFLICT)
    fail_msg("second writer: expected UOW_ECONFLICT, got %d: %s", b.rc, b.message);
  char where[64];
  snprintf(where, sizeof(where), "id = %lld AND seats = 7 AND version = 2", (long long)id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
  /* A new unit still works. */
  uow_unit *unit;
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  c->seats = 1;
  UOK(unit, uow_commit(unit));
  assert_int_equal(c->version, 3);
  uow_end(unit);
}

static void connection_lost_inside_a_unit_gives_eio(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Lost", 10);
  uow_unit *unit;
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  /* The unit's own backend ends: the server goes away under it. */
  UCODE(unit, UOW_EIO, uow_exec(unit, "main", "SELECT pg_terminate_backend(pg_backend_pid())",
                                NULL, 0));
  assert_contains(uow_errmsg(unit), "store 'main'");
  c->seats = 0;
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "courses", "seats = 0"), 0);
  /* The next unit gets a working connection. */
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  uow_end(unit);
}

static void pooled_connection_killed_between_units_is_replaced(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Restart", 10);
  uow_env *other = test_world_other(w, NULL);
  uow_unit *unit;
  /* Every other backend of the database ends, as when the server restarts. */
  EOK(other, uow_begin(other, &unit));
  UOK(unit, uow_exec(unit, "main",
                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                     NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  c->seats = 9;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "courses", "seats = 9"), 1);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(flush_and_commit_of_inserts_cost_one_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(second_repeatable_read_writer_gets_conflict_and_one_change_is_stored, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(connection_lost_inside_a_unit_gives_eio, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(pooled_connection_killed_between_units_is_replaced, test_setup, test_teardown),
  };
  return cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
}
