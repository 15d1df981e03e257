/*
 * test_alloc.c - allocation-failure torture: a whole business operation
 * (open, map, begin, get, change, new parent and children, savepoint,
 * rollback_to, emit, hook, commit, end, close) runs once for every allocation
 * the library makes, with that allocation failing. Each run must return a
 * proper error code, leak nothing, and leave the database with all of the
 * unit or none of it; a run that reports a commit must have written all of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "uow.h"

typedef struct account {
  int64_t id;
  char *owner;
  double balance;
  int64_t version;
} account;
static const uow_column account_columns[] = {
    UOW_COLUMN(account, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(account, owner, UOW_TEXT, 0),
    UOW_COLUMN(account, balance, UOW_DOUBLE, 0),
    UOW_COLUMN(account, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity account_entity = UOW_ENTITY(account, "accounts", account_columns);

typedef struct order {
  int64_t id;
  char *title;
} order;
static const uow_column order_columns[] = {
    UOW_COLUMN(order, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(order, title, UOW_TEXT, 0),
};
static const uow_entity order_entity = UOW_ENTITY(order, "orders", order_columns);

typedef struct line {
  int64_t id;
  int64_t order_id;
  order *parent;
  char *sku;
} line;
static const uow_column line_columns[] = {
    UOW_COLUMN(line, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_REFERENCE(line, order_id, UOW_INT64, parent, order_entity, 0),
    UOW_COLUMN(line, sku, UOW_TEXT, 0),
};
static const uow_entity line_entity = UOW_ENTITY(line, "lines", line_columns);

typedef struct outbox_view {
  int64_t id;
  char *topic;
} outbox_view;
static const uow_column outbox_view_columns[] = {
    UOW_COLUMN(outbox_view, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(outbox_view, topic, UOW_TEXT, 0),
};
static const uow_entity outbox_view_entity =
    UOW_ENTITY(outbox_view, "uow_outbox", outbox_view_columns);

/* ---- the failing allocator ---- */

static long allocations;  /* made so far in this run */
static long fail_at;      /* the allocation that fails (1-based); 0: none */
static long outstanding;  /* live blocks */
static bool failed_once;

static bool should_fail(void) {
  allocations++;
  if (fail_at && allocations == fail_at) {
    failed_once = true;
    return true;
  }
  return false;
}

static void *failing_malloc(size_t size) {
  if (should_fail())
    return NULL;
  void *p = malloc(size);
  if (p)
    outstanding++;
  return p;
}

static void *failing_realloc(void *ptr, size_t size) {
  if (should_fail())
    return NULL;
  void *p = realloc(ptr, size);
  if (p && !ptr)
    outstanding++;
  return p;
}

static void failing_free(void *ptr) {
  if (ptr)
    outstanding--;
  free(ptr);
}

/* ---- the operation under test ---- */

static int hook_runs;
static void count_hook(void *arg) {
  (void)arg;
  hook_runs++;
}

static bool is_library_code(int rc) {
  return rc == UOW_OK || rc == UOW_ENOMEM || rc == UOW_EMISUSE || rc == UOW_EINVAL ||
         rc == UOW_EIO;
}

static int open_env(const char *url, uow_env **env) {
  int rc = uow_env_open(NULL, env);
  if (rc)
    return rc;
  if ((rc = uow_env_add_store(*env, "main", url)) ||
      (rc = uow_env_map(*env, &account_entity, "main")) ||
      (rc = uow_env_map(*env, &order_entity, "main")) ||
      (rc = uow_env_map(*env, &line_entity, "main")) ||
      (rc = uow_env_map(*env, &outbox_view_entity, "main")))
    return rc;
  return UOW_OK;
}

/* Every step checks its code; the first failure ends the unit. Returns commit's code. */
static int business_operation(const char *url, bool *committed) {
  uow_env *env = NULL;
  uow_unit *unit = NULL;
  int64_t id = 1;
  account *acct;
  order *o;
  line *l1, *l2;
  order *dropped;
  *committed = false;
  int rc = open_env(url, &env);
  if (rc)
    goto out;
  if ((rc = uow_begin(env, &unit)))
    goto out;
  if ((rc = uow_get(unit, &account_entity, &id, (void **)&acct)))
    goto out;
  acct->balance -= 10;
  if ((rc = uow_new(unit, &line_entity, (void **)&l1)) ||
      (rc = uow_new(unit, &order_entity, (void **)&o)) ||
      (rc = uow_new(unit, &line_entity, (void **)&l2)))
    goto out;
  o->title = "order one";
  l1->parent = o;
  l1->sku = uow_strdup(unit, "sku-1");
  l2->parent = o;
  l2->sku = "sku-2";
  if (!l1->sku) {
    rc = UOW_ENOMEM;
    goto out;
  }
  if ((rc = uow_savepoint(unit)) || (rc = uow_new(unit, &order_entity, (void **)&dropped)))
    goto out;
  dropped->title = "dropped";
  if ((rc = uow_flush(unit)) || (rc = uow_rollback_to(unit)))
    goto out;
  if ((rc = uow_emit(unit, "order.created", "order-1", "{}", 2)) ||
      (rc = uow_on_commit(unit, count_hook, NULL)))
    goto out;
  rc = uow_commit(unit);
  *committed = rc == UOW_OK;
out:
  uow_end(unit);
  uow_env_close(env);
  return rc;
}

typedef struct state {
  double balance;
  size_t orders, lines, events;
} state;

static void read_state(const char *url, state *s) {
  uow_env *env;
  uow_unit *unit;
  assert_int_equal(open_env(url, &env), UOW_OK);
  assert_int_equal(uow_begin(env, &unit), UOW_OK);
  int64_t id = 1;
  account *acct;
  assert_int_equal(uow_get(unit, &account_entity, &id, (void **)&acct), UOW_OK);
  s->balance = acct->balance;
  void **rows;
  assert_int_equal(uow_find(unit, &order_entity, NULL, NULL, 0, &rows, &s->orders), UOW_OK);
  assert_int_equal(uow_find(unit, &line_entity, NULL, NULL, 0, &rows, &s->lines), UOW_OK);
  assert_int_equal(uow_find(unit, &outbox_view_entity, NULL, NULL, 0, &rows, &s->events),
                   UOW_OK);
  uow_end(unit);
  uow_env_close(env);
}

static void fresh_database(const char *dir, char *url, size_t cap) {
  static int n;
  snprintf(url, cap, "sqlite:%s/run%d.db", dir, ++n);
  uow_env *env;
  uow_unit *unit;
  assert_int_equal(open_env(url, &env), UOW_OK);
  assert_int_equal(uow_env_create_schema(env), UOW_OK);
  assert_int_equal(uow_begin(env, &unit), UOW_OK);
  account *acct;
  assert_int_equal(uow_new(unit, &account_entity, (void **)&acct), UOW_OK);
  acct->id = 1;
  acct->owner = "ada";
  acct->balance = 100;
  assert_int_equal(uow_commit(unit), UOW_OK);
  uow_end(unit);
  uow_env_close(env);
}

static void every_allocation_failing_in_turn_leaves_all_or_nothing(void **ctx) {
  (void)ctx;
  char dir[] = "/tmp/uow-alloc-XXXXXX";
  assert_non_null(mkdtemp(dir));
  long points = 0;
  for (fail_at = 1;; fail_at++) {
    char url[256];
    fresh_database(dir, url, sizeof(url));
    assert_int_equal(uow_set_allocator(failing_malloc, failing_realloc, failing_free), UOW_OK);
    allocations = 0;
    outstanding = 0;
    failed_once = false;
    hook_runs = 0;
    bool committed;
    int rc = business_operation(url, &committed);
    long leaked = outstanding;
    bool injected = failed_once;
    assert_int_equal(uow_set_allocator(NULL, NULL, NULL), UOW_OK);

    if (leaked != 0)
      fail_msg("allocation %ld failing leaks %ld blocks (rc %d)", fail_at, leaked, rc);
    if (!is_library_code(rc))
      fail_msg("allocation %ld failing gives unexpected code %d", fail_at, rc);
    state s;
    read_state(url, &s);
    bool all = s.balance == 90 && s.orders == 1 && s.lines == 2 && s.events == 1;
    bool none = s.balance == 100 && s.orders == 0 && s.lines == 0 && s.events == 0;
    if (!all && !none)
      fail_msg("allocation %ld failing leaves a partial unit: balance %g, %zu orders, %zu lines, "
               "%zu events",
               fail_at, s.balance, s.orders, s.lines, s.events);
    if (committed && !all)
      fail_msg("allocation %ld failing: commit reported success but the unit is missing",
               fail_at);
    assert_int_equal(hook_runs, committed ? 1 : 0);
    if (!injected) {
      /* The operation made fewer allocations than fail_at: every point is covered. */
      assert_int_equal(rc, UOW_OK);
      assert_true(all);
      break;
    }
    points++;
  }
  printf("allocation-failure points covered: %ld\n", points);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_allocation_failing_in_turn_leaves_all_or_nothing),
  };
  return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
