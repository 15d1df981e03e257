/*
 * test_alloc.c - allocation-failure torture of units on one SQL store (the
 * store under test: SQLite or PostgreSQL). Each scenario runs once for every
 * allocation the library makes, with that allocation failing (torture.c):
 *
 *  - a business operation: open, map, begin, get, change, new parent and
 *    children, savepoint, rollback_to, emit, hook, commit, end, close;
 *  - every entry point of a unit: env open, add_store, map, create_schema,
 *    status; begin_ex, fetch, get and get_ex, find and find_ex, new, delete,
 *    strdup, blobdup, flush, exec and exec_ex, savepoint, rollback_to,
 *    release, emit, on_commit, commit (with writes in its last batch and a
 *    savepoint open), end; then uow_run; close.
 *
 * Each run must return 0 or UOW_ENOMEM with a message, leak nothing, and
 * leave every unit all or nothing: one whose commit returned 0 all, one whose
 * commit failed or was not reached nothing. The relay, Redis and units across
 * stores have suites of their own (test_alloc_relay.c, test_alloc_coord.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "torture.h"

/* ---- scenario: the business operation ---- */

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
static const uow_entity account_entity = UOW_ENTITY(account, "alloc_accounts", account_columns);

typedef struct order {
  int64_t id;
  char *title;
} order;
static const uow_column order_columns[] = {
    UOW_COLUMN(order, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(order, title, UOW_TEXT, 0),
};
static const uow_entity order_entity = UOW_ENTITY(order, "alloc_orders", order_columns);

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
static const uow_entity line_entity = UOW_ENTITY(line, "alloc_lines", line_columns);

typedef struct business {
  uow_env *env; /* test_env_open(): the database */
  int hooks;    /* on-commit hooks run in the current run */
  int commit;   /* the commit's code, TORTURE_NOT_REACHED before it */
} business;

static void count_hook(void *arg) { ((business *)arg)->hooks++; }

static int business_open(uow_env **env, char *msg, size_t cap) {
  int rc = uow_env_open(NULL, env);
  if (rc) {
    snprintf(msg, cap, "uow_env_open: %s", uow_strerror(rc));
    return rc;
  }
  if ((rc = uow_env_add_store(*env, "main", test_url())) ||
      (rc = uow_env_map(*env, &account_entity, "main")) ||
      (rc = uow_env_map(*env, &order_entity, "main")) ||
      (rc = uow_env_map(*env, &line_entity, "main")))
    TORTURE_SAY("opening", uow_env_errmsg(*env));
  return rc;
}

static void business_drop(void) {
  torture_exec(test_url(), "DROP TABLE IF EXISTS alloc_lines; DROP TABLE IF EXISTS alloc_orders; "
                           "DROP TABLE IF EXISTS alloc_accounts");
}

static void business_setup(void *ctx) {
  business *b = ctx;
  assert_int_equal(test_env_open(&b->env), UOW_OK);
  business_drop();
  uow_env *env;
  char msg[TORTURE_MSG];
  if (business_open(&env, msg, sizeof(msg)) || uow_env_create_schema(env))
    fail_msg("setup: %s %s", msg, uow_env_errmsg(env));
  uow_env_close(env);
}

static void business_teardown(void *ctx) {
  business *b = ctx;
  business_drop();
  test_env_close(b->env);
}

static void business_prepare(void *ctx, long point) {
  business *b = ctx;
  (void)point;
  torture_env_exec(b->env, "DELETE FROM alloc_lines", "DELETE FROM alloc_orders",
                   "DELETE FROM alloc_accounts", "DELETE FROM uow_outbox",
                   "INSERT INTO alloc_accounts (id, owner, balance, version) "
                   "VALUES (1, 'ada', 100, 1)",
                   NULL);
}

static int business_run(void *ctx, char *msg, size_t cap) {
  business *b = ctx;
  uow_env *env = NULL;
  uow_unit *unit = NULL;
  int64_t id = 1;
  account *acct = NULL;
  order *o = NULL, *dropped = NULL;
  line *l1 = NULL, *l2 = NULL;
  b->hooks = 0;
  b->commit = TORTURE_NOT_REACHED;
  int rc = business_open(&env, msg, cap);
  ENV_STEP(env, uow_begin(env, &unit));
  UNIT_STEP(unit, uow_get(unit, &account_entity, &id, (void **)&acct));
  if (!rc)
    acct->balance -= 10;
  UNIT_STEP(unit, uow_new(unit, &line_entity, (void **)&l1));
  UNIT_STEP(unit, uow_new(unit, &order_entity, (void **)&o));
  UNIT_STEP(unit, uow_new(unit, &line_entity, (void **)&l2));
  if (!rc) {
    o->title = "order one";
    l1->parent = o;
    l2->parent = o;
    l2->sku = "sku-2";
  }
  UNIT_DUP(unit, l1->sku, "sku-1");
  UNIT_STEP(unit, uow_savepoint(unit));
  UNIT_STEP(unit, uow_new(unit, &order_entity, (void **)&dropped));
  if (!rc)
    dropped->title = "dropped";
  UNIT_STEP(unit, uow_flush(unit));
  UNIT_STEP(unit, uow_rollback_to(unit));
  UNIT_STEP(unit, uow_emit(unit, "order.created", "order-1", "{}", 2));
  UNIT_STEP(unit, uow_on_commit(unit, count_hook, b));
  if (!rc) {
    rc = b->commit = uow_commit(unit);
    if (rc)
      TORTURE_SAY("uow_commit", uow_errmsg(unit));
  }
  uow_end(unit);
  uow_env_close(env);
  return rc;
}

static const torture_fact business_facts[] = {
    {"alloc_accounts", "id = 1 AND balance = 90 AND version = 2", 1,
     "id = 1 AND balance = 100 AND version = 1"},
    {"alloc_orders", "title = 'order one'", 1, NULL},
    {"alloc_lines", "sku IN ('sku-1', 'sku-2') AND order_id = (SELECT id FROM alloc_orders)", 2,
     NULL},
    {"uow_outbox", "topic = 'order.created'", 1, NULL},
    {"alloc_orders", "title = 'dropped'", 0, NULL}, /* rolled back to before it, always */
};

static bool business_check(void *ctx, int rc, long point) {
  business *b = ctx;
  (void)rc;
  (void)point;
  bool all, none;
  char why[1024];
  size_t n = sizeof(business_facts) / sizeof(business_facts[0]);
  torture_read_facts(test_url(), business_facts, n, &all, &none, why, sizeof(why));
  bool ok = torture_unit_consistent("the unit", b->commit, all, none, why);
  if (b->hooks != (b->commit == UOW_OK)) {
    fprintf(stderr, "the hook ran %d times after a commit that returned %d\n", b->hooks, b->commit);
    ok = false;
  }
  return ok;
}

static void every_allocation_failing_in_turn_leaves_all_or_nothing(void **state) {
  (void)state;
  business b = {NULL, 0, TORTURE_NOT_REACHED};
  char name[64];
  snprintf(name, sizeof(name), "business operation %s", test_store_kind());
  torture_scenario s = {
      name, &b, business_setup, business_teardown, business_prepare, business_run, business_check,
      NULL, 0};
  torture_run(&s);
}

/* ---- scenario: every entry point of a unit, and uow_run ---- */

/* Texts the unit writes: short, or `pad` bytes longer, so that the unit's
 * arena takes new blocks (allocations that can fail) at other places. */
enum { PAD_MAX = 3000 };

typedef struct api {
  uow_env *env; /* test_env_open(): the database */
  int hooks;
  int commit; /* the explicit unit's commit */
  int run;    /* uow_run's code */
  size_t pad;
  char learner[PAD_MAX + 8], body[PAD_MAX + 8], draft[PAD_MAX + 8], label[PAD_MAX + 8];
  char facts[3][160]; /* the conditions on them, for unit_facts */
} api;

static void api_hook(void *arg) { ((api *)arg)->hooks++; }

static void padded(char *out, const char *text, size_t pad) {
  size_t n = strlen(text);
  memcpy(out, text, n);
  memset(out + n, '~', pad);
  out[n + pad] = '\0';
}

static void api_setup(void *ctx) {
  api *a = ctx;
  assert_int_equal(test_env_open(&a->env), UOW_OK);
  padded(a->learner, "ada", a->pad);
  padded(a->body, "hello", a->pad);
  padded(a->draft, "new", a->pad);
  padded(a->label, "New", a->pad);
  snprintf(a->facts[0], sizeof(a->facts[0]),
           "course_id = 2001 AND substr(learner, 1, 3) = 'ada' AND length(learner) = %zu AND "
           "version = 1",
           3 + a->pad);
  snprintf(a->facts[1], sizeof(a->facts[1]),
           "name LIKE 'new%%' AND substr(label, 1, 3) = 'New' AND length(label) = %zu", 3 + a->pad);
  snprintf(a->facts[2], sizeof(a->facts[2]),
           "id = 7 AND substr(body, 1, 5) = 'hello' AND length(body) = %zu AND length(data) = 3",
           5 + a->pad);
}

static void api_teardown(void *ctx) {
  api *a = ctx;
  test_env_close(a->env);
}

/* Explicit keys far from the generated ones, which PostgreSQL counts from 1. */
static void api_prepare(void *ctx, long point) {
  api *a = ctx;
  (void)point;
  torture_env_exec(
      a->env, "DELETE FROM enrollments", "DELETE FROM courses", "DELETE FROM users",
      "DELETE FROM tags", "DELETE FROM notes", "DELETE FROM uow_outbox",
      "INSERT INTO users (id, email, name, score, version) VALUES "
      "(1001, 'ada@example.com', 'Ada', 10, 1), (1002, 'bob@example.com', 'Bob', 5, 1)",
      "INSERT INTO courses (id, title, seats, version) VALUES (2001, 'C', 3, 1)",
      "INSERT INTO tags (name, label) VALUES ('old', 'Old')", NULL);
}

/* The body of uow_run: a second unit. */
static int api_body(uow_unit *unit, void *arg) {
  (void)arg;
  int64_t id = 1002;
  user *u;
  tag *t;
  int rc = uow_get(unit, &user_entity, &id, (void **)&u);
  if (!rc) {
    u->score += 1;
    rc = uow_new(unit, &tag_entity, (void **)&t);
  }
  if (!rc) {
    t->name = "run";
    t->label = "Run";
    rc = uow_emit(unit, "ran", "bob", "x", 1);
  }
  return rc;
}

/* The explicit unit: every verb, with writes left for the commit's last batch. */
static int api_unit(api *a, uow_env *env, char *msg, size_t cap) {
  uow_unit *unit = NULL;
  uow_begin_options bo = UOW_BEGIN_OPTIONS_INIT;
  int64_t ada = 1001, c_id = 2001;
  const char *old = "old";
  user *u = NULL, *tmp = NULL;
  course *c = NULL;
  enrollment *e = NULL;
  note *nt = NULL;
  tag *t = NULL;
  void **rows = NULL;
  size_t n = 0;
  int64_t affected = 0;
  int rc = UOW_OK;
  ENV_STEP(env, uow_begin_ex(env, &bo, &unit));
  /* Several reads at once: the course, every tag, Bob; later gets of them
   * come from the identity map. */
  int64_t bob_id = 1002;
  user *bob = NULL;
  void **tags = NULL;
  size_t ntags = 0;
  uow_fetch_item items[3] = {
      uow_fetch_get(&course_entity, &c_id, 0, (void **)&c),
      uow_fetch_find(&tag_entity, NULL, NULL, 0, 0, &tags, &ntags),
      uow_fetch_get(&user_entity, &bob_id, UOW_FOR_UPDATE, (void **)&bob),
  };
  UNIT_STEP(unit, uow_fetch(unit, items, 3));
  if (!rc && (!c || ntags != 1 || !bob)) {
    snprintf(msg, cap, "fetch read course %p, %zu tags, Bob %p", (void *)c, ntags, (void *)bob);
    rc = TORTURE_UNEXPECTED;
  }
  UNIT_STEP(unit, uow_get_ex(unit, &user_entity, &ada, UOW_FOR_UPDATE, (void **)&u));
  UNIT_STEP(unit, uow_get(unit, &course_entity, &c_id, (void **)&c));
  if (!rc) {
    u->score += 1;
    c->seats -= 1;
  }
  UNIT_STEP(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  if (!rc)
    e->course = c;
  UNIT_DUP(unit, e->learner, a->learner);
  const uow_value below = uow_double(100);
  UNIT_STEP(unit, uow_find_ex(unit, &user_entity, "score < ?", &below, 1, 0, &rows, &n));
  if (!rc && n != 2) {
    snprintf(msg, cap, "find_ex found %zu users, not 2", n);
    rc = TORTURE_UNEXPECTED;
  }
  UNIT_STEP(unit, uow_get(unit, &tag_entity, &old, (void **)&t));
  UNIT_STEP(unit, uow_delete(unit, t));
  UNIT_STEP(unit, uow_new(unit, &note_entity, (void **)&nt));
  if (!rc) {
    nt->id = 7;
    nt->weight = 0.5;
    nt->pinned = true;
    nt->data = uow_blobdup(unit, "\0\1\2", 3);
    if (!nt->data.data) {
      rc = UOW_ENOMEM;
      TORTURE_SAY("uow_blobdup", uow_errmsg(unit));
    }
  }
  UNIT_DUP(unit, nt->body, a->body);
  /* A savepoint whose work is undone: a new user, a statement, a change. */
  UNIT_STEP(unit, uow_savepoint(unit));
  UNIT_STEP(unit, uow_new(unit, &user_entity, (void **)&tmp));
  if (!rc) {
    tmp->email = "tmp@example.com";
    tmp->name = "Tmp";
  }
  const uow_value rename[2] = {uow_text("Ada?"), uow_int64(1001)};
  UNIT_STEP(unit, uow_exec(unit, "main", "UPDATE users SET name = ? WHERE id = ?", rename, 2));
  if (!rc)
    u->score += 100;
  UNIT_STEP(unit, uow_flush(unit));
  UNIT_STEP(unit, uow_find(unit, &tag_entity, NULL, NULL, 0, &rows, &n));
  UNIT_STEP(unit, uow_rollback_to(unit));
  /* A savepoint whose work is kept. */
  UNIT_STEP(unit, uow_savepoint(unit));
  UNIT_STEP(unit, uow_exec_ex(unit, "main", "UPDATE users SET name = 'Bobby' WHERE id = 1002", NULL,
                              0, &affected));
  if (!rc && affected != 1) {
    snprintf(msg, cap, "exec_ex changed %lld rows, not 1", (long long)affected);
    rc = TORTURE_UNEXPECTED;
  }
  UNIT_STEP(unit, uow_release(unit));
  /* New tags, inserted by the next savepoint's flush. */
  static const char *const new_tags[] = {"new0", "new1", "new2", "new3", "new4",
                                         "new5", "new6", "new7", "new8", "new9"};
  enum { NEW_TAGS = sizeof(new_tags) / sizeof(new_tags[0]) };
  tag *added[NEW_TAGS];
  for (size_t i = 0; i < NEW_TAGS; i++) {
    UNIT_STEP(unit, uow_new(unit, &tag_entity, (void **)&added[i]));
    if (!rc) {
      added[i]->name = (char *)new_tags[i];
      added[i]->label = a->draft;
    }
  }
  /* Left for the commit, in a savepoint it commits open: updates of objects
   * older than the savepoint beside the outbox rows, enough of them to grow
   * the savepoint's undo log after the COMMIT. */
  UNIT_STEP(unit, uow_savepoint(unit));
  UNIT_DUP(unit, u->name, "Ada L.");
  for (size_t i = 0; !rc && i < NEW_TAGS; i++)
    added[i]->label = a->label;
  UNIT_STEP(unit, uow_emit(unit, "enrolled", "ada", "{\"course\":2001}", 15));
  UNIT_STEP(unit, uow_emit(unit, "noted", NULL, "", 0));
  UNIT_STEP(unit, uow_on_commit(unit, api_hook, a));
  if (!rc) {
    rc = a->commit = uow_commit(unit);
    if (rc)
      TORTURE_SAY("uow_commit", uow_errmsg(unit));
  }
  uow_end(unit);
  return rc;
}

static int api_run(void *ctx, char *msg, size_t cap) {
  api *a = ctx;
  uow_env *env = NULL;
  a->hooks = 0;
  a->commit = a->run = TORTURE_NOT_REACHED;
  int rc = torture_open_env(test_url(), true, &env, msg, cap);
  uow_store_status status[2];
  size_t count = 0;
  ENV_STEP(env, uow_env_status(env, status, 2, &count));
  if (!rc && (count != 1 || !status[0].reachable || status[0].decisions < 0 ||
              status[0].outbox_pending < 0 || status[0].outbox_dead < 0)) {
    snprintf(msg, cap, "status: %zu stores, reachable %d, counts %lld %lld %lld: %s", count,
             status[0].reachable, (long long)status[0].decisions,
             (long long)status[0].outbox_pending, (long long)status[0].outbox_dead,
             status[0].error);
    rc = TORTURE_UNEXPECTED;
  }
  if (!rc)
    rc = api_unit(a, env, msg, cap);
  if (!rc) {
    uow_run_options ro = UOW_RUN_OPTIONS_INIT;
    rc = a->run = uow_run(env, api_body, NULL, &ro);
    if (rc)
      TORTURE_SAY("uow_run", uow_env_errmsg(env));
  }
  uow_env_close(env);
  return rc;
}

static const torture_fact run_facts[] = {
    {"users", "id = 1002 AND score = 6 AND version = 2", 1, "id = 1002 AND score = 5"},
    {"tags", "name = 'run'", 1, NULL},
    {"uow_outbox", "topic = 'ran' AND event_key = 'bob'", 1, NULL},
};

static bool api_check(void *ctx, int rc, long point) {
  api *a = ctx;
  (void)rc;
  (void)point;
  const torture_fact unit_facts[] = {
      {"users", "id = 1001 AND score = 11 AND name = 'Ada L.' AND version = 3", 1,
       "id = 1001 AND score = 10 AND name = 'Ada' AND version = 1"},
      {"courses", "id = 2001 AND seats = 2 AND version = 2", 1,
       "id = 2001 AND seats = 3 AND version = 1"},
      {"enrollments", a->facts[0], 1, NULL},
      {"tags", a->facts[1], 10, NULL},
      {"tags", "name = 'old'", 0, "name = 'old'"},
      {"notes", a->facts[2], 1, NULL},
      {"users", "id = 1002 AND name = 'Bobby'", 1, "id = 1002 AND name = 'Bob'"},
      {"uow_outbox", "topic IN ('enrolled', 'noted')", 2, NULL},
      {"users", "email = 'tmp@example.com'", 0, NULL}, /* rolled back to before it, always */
  };
  bool all, none;
  char why[1024];
  torture_read_facts(test_url(), unit_facts, sizeof(unit_facts) / sizeof(unit_facts[0]), &all,
                     &none, why, sizeof(why));
  bool ok = torture_unit_consistent("the explicit unit", a->commit, all, none, why);
  torture_read_facts(test_url(), run_facts, sizeof(run_facts) / sizeof(run_facts[0]), &all, &none,
                     why, sizeof(why));
  ok = torture_unit_consistent("the unit of uow_run", a->run, all, none, why) && ok;
  if (a->hooks != (a->commit == UOW_OK)) {
    fprintf(stderr, "the hook ran %d times after a commit that returned %d\n", a->hooks, a->commit);
    ok = false;
  }
  return ok;
}

/* Short texts, then texts long enough to move where the arena grows. */
static void every_unit_entry_point_fails_cleanly_at_each_allocation(void **state) {
  (void)state;
  static const size_t pads[] = {0, PAD_MAX};
  for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
    api *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->pad = pads[i];
    char name[96];
    snprintf(name, sizeof(name), "unit entry points %s, texts +%zu bytes", test_store_kind(),
             pads[i]);
    torture_scenario s = {name,      a,    api_setup, api_teardown, api_prepare, api_run,
                          api_check, NULL, 0};
    torture_run(&s);
    free(a);
  }
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_allocation_failing_in_turn_leaves_all_or_nothing),
      cmocka_unit_test(every_unit_entry_point_fails_cleanly_at_each_allocation),
  };
  return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
