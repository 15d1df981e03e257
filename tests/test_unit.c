/*
 * test_unit.c - the core behaviour of a unit of work, against a real store:
 * identity map, change tracking, versions, flush order, queries, savepoints,
 * hooks, outbox events, exec, uow_run, errors and misuse, column types,
 * mapping checks, multi-store refusal, concurrency, and uow_fetch (several
 * reads at once, also from a store of store ABI 2).
 *
 * Run against SQLite (default) or PostgreSQL with UOW_TEST_STORE; every test
 * means the same thing on both. What a test checks in the database is read
 * through the oracle in support.c (the driver itself), not through libuow.
 *
 *   test_unit [cmocka-filter]
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "uow/store.h"

/* ---- helpers ---- */

static char *dup(uow_unit *unit, const char *s) {
  char *copy = uow_strdup(unit, s);
  if (!copy)
    fail_msg("uow_strdup(\"%s\") failed: %s", s, uow_errmsg(unit));
  return copy;
}

static uow_unit *begin(uow_env *env) {
  uow_unit *unit = NULL;
  EOK(env, uow_begin(env, &unit));
  assert_non_null(unit);
  return unit;
}

static user *new_user(uow_unit *unit, const char *email, const char *name, double score) {
  user *u = NULL;
  UOK(unit, uow_new(unit, &user_entity, (void **)&u));
  u->email = dup(unit, email);
  u->name = dup(unit, name);
  u->score = score;
  return u;
}

static user *get_user(uow_unit *unit, int64_t id) {
  user *u = NULL;
  UOK(unit, uow_get(unit, &user_entity, &id, (void **)&u));
  assert_non_null(u);
  return u;
}

/* A committed user; returns its id. */
static int64_t seed_user(uow_env *env, const char *email, const char *name, double score) {
  uow_unit *unit = begin(env);
  user *u = new_user(unit, email, name, score);
  UOK(unit, uow_commit(unit));
  int64_t id = u->id;
  uow_end(unit);
  assert_true(id > 0);
  return id;
}

static int64_t seed_profile(uow_env *env, const char *email, double score) {
  uow_unit *unit = begin(env);
  profile *p = NULL;
  UOK(unit, uow_new(unit, &profile_entity, (void **)&p));
  p->email = dup(unit, email);
  p->score = score;
  UOK(unit, uow_commit(unit));
  int64_t id = p->id;
  uow_end(unit);
  assert_true(id > 0);
  return id;
}

static int64_t seed_course(uow_env *env, const char *title, int64_t seats) {
  uow_unit *unit = begin(env);
  course *c = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, title);
  c->seats = seats;
  UOK(unit, uow_commit(unit));
  int64_t id = c->id;
  uow_end(unit);
  assert_true(id > 0);
  return id;
}

/* A where clause for the oracle (test text only, never user input). */
static const char *where(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *where(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  return buf;
}

/* Rows of `table` matching a printf-made condition. */
#define COUNT(env, table, ...) test_count((env), (table), where(cond, sizeof(cond), __VA_ARGS__))

/* ---- lifecycle ---- */

static void unit_rolls_back_when_ended_without_commit(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  user *u = new_user(unit, "ended@example.com", "Ended", 1.0);
  UOK(unit, uow_flush(unit)); /* the row is in the store's transaction now */
  int64_t id = u->id;
  assert_true(id > 0);
  assert_int_equal(test_count(w->env, "users", NULL), 0); /* not committed: not visible */
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0);

  unit = begin(w->env);
  void *found = &found;
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &found));
  assert_null(found);
  uow_end(unit);
}

/* ---- identity map ---- */

static void get_returns_same_pointer_twice(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "same@example.com", "Same", 1.0);
  uow_unit *unit = begin(w->env);
  user *a = get_user(unit, id);
  user *b = get_user(unit, id);
  assert_ptr_equal(a, b);
  assert_string_equal(a->email, "same@example.com");

  /* The store is asked once: a change committed elsewhere since is not read again. */
  uow_env *other = test_world_other(w, NULL);
  uow_unit *writer = begin(other);
  get_user(writer, id)->score = 2.0;
  UOK(writer, uow_commit(writer));
  uow_end(writer);

  user *c = get_user(unit, id);
  assert_ptr_equal(c, a);
  assert_true(c->score == 1.0);

  void **rows = NULL;
  size_t count = 0;
  uow_value key = uow_int64(id);
  UOK(unit, uow_find(unit, &user_entity, "id = ?", &key, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_ptr_equal(rows[0], a);
  uow_end(unit);
}

static void get_of_missing_key_is_notfound(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  int64_t id = 424242;
  void *out = &out;
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &out));
  assert_null(out);
  assert_true(uow_errmsg(unit)[0] != '\0');
  /* Not finding is not a failure: the unit goes on. */
  new_user(unit, "after-notfound@example.com", "After", 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'after-notfound@example.com'"), 1);
}

static void new_object_is_in_the_identity_map_after_flush(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  user *u = new_user(unit, "mapped@example.com", "Mapped", 1.0);
  UOK(unit, uow_flush(unit));
  assert_ptr_equal(get_user(unit, u->id), u);
  u->score = 2.0; /* a change after the insert is an update of the same row */
  UOK(unit, uow_commit(unit));
  assert_int_equal(u->version, 2);
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
  assert_int_equal(test_count(w->env, "users", "score = 2 AND version = 2"), 1);
}

/* ---- inserts, keys and versions ---- */

static void new_object_gets_generated_key_written_back(void **state) {
  test_world *w = *state;
  char cond[256];
  uow_unit *unit = begin(w->env);
  user *a = new_user(unit, "gen-a@example.com", "A", 1.0);
  user *b = new_user(unit, "gen-b@example.com", "B", 2.0);
  assert_int_equal(a->id, 0);
  UOK(unit, uow_flush(unit));
  assert_true(a->id > 0);
  assert_true(b->id > 0);
  assert_true(a->id != b->id);
  int64_t id_a = a->id, id_b = b->id;
  UOK(unit, uow_commit(unit));
  assert_int_equal(a->id, id_a); /* the commit does not change a key once written back */
  uow_end(unit);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND email = 'gen-a@example.com'", (long long)id_a), 1);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND email = 'gen-b@example.com'", (long long)id_b), 1);

  unit = begin(w->env);
  assert_string_equal(get_user(unit, id_a)->email, "gen-a@example.com");
  uow_end(unit);
}

static void many_new_objects_get_their_own_keys(void **state) {
  test_world *w = *state;
  enum { N = 250 }; /* more than one multi-row INSERT's worth */
  user *users[N];
  uow_unit *unit = begin(w->env);
  for (int i = 0; i < N; i++) {
    char email[64];
    snprintf(email, sizeof(email), "many%d@example.com", i);
    users[i] = new_user(unit, email, "Many", (double)(i + 1));
  }
  UOK(unit, uow_commit(unit));
  long long sum = 0;
  for (int i = 0; i < N; i++) {
    assert_true(users[i]->id > 0);
    for (int j = 0; j < i; j++)
      assert_true(users[i]->id != users[j]->id);
    sum += (long long)users[i]->id * (i + 1);
  }
  int64_t ids[N];
  for (int i = 0; i < N; i++)
    ids[i] = users[i]->id;
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), N);
  /* Each object got the key of its own row: the row's score says which object it was. */
  assert_int_equal(test_int(w->env, "SELECT CAST(sum(id * CAST(score AS INTEGER)) AS BIGINT) "
                                    "FROM users"),
                   sum);
  unit = begin(w->env);
  for (int i = 0; i < N; i += 37) {
    char email[64];
    snprintf(email, sizeof(email), "many%d@example.com", i);
    assert_string_equal(get_user(unit, ids[i])->email, email);
  }
  uow_end(unit);
}

/* Inserts with keys given go many rows to a statement; one whose key the
 * store generates may sit between them: every row is written, generated keys
 * come back in creation order, and a failing row fails its whole unit. */
static void inserts_with_given_keys_are_batched_around_generated_ones(void **state) {
  test_world *w = *state;
  enum { N = 250 }; /* more than two multi-row INSERTs' worth on each side */
  user *generated[3];
  char email[64];
  uow_unit *unit = begin(w->env);
  for (int i = 0; i < 2 * N + 3; i++) {
    bool given = i < N || i >= N + 3;
    snprintf(email, sizeof(email), "batch%d@example.com", i);
    user *u = new_user(unit, email, given ? "Given" : "Generated", (double)i);
    if (given)
      u->id = 100000 + i;
    else
      generated[i - N] = u;
  }
  UOK(unit, uow_commit(unit));
  for (int k = 0; k < 3; k++) {
    assert_true(generated[k]->id > 0);
    if (k)
      assert_true(generated[k]->id > generated[k - 1]->id);
  }
  int64_t first_generated = generated[0]->id;
  uow_end(unit);
  char cond[256];
  assert_int_equal(test_count(w->env, "users", NULL), 2 * N + 3);
  assert_int_equal(
      COUNT(w->env, "users", "name = 'Given' AND id = 100000 + CAST(score AS INTEGER)"), 2 * N);
  assert_int_equal(COUNT(w->env, "users", "id = %lld AND email = 'batch%d@example.com'",
                         (long long)first_generated, N),
                   1);

  /* One duplicate among 150 given-key rows: none of them is written. */
  unit = begin(w->env);
  for (int i = 0; i < 150; i++) {
    snprintf(email, sizeof(email), i == 120 ? "batch7@example.com" : "late%d@example.com", i);
    new_user(unit, email, "Late", 1.0)->id = 200000 + i;
  }
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  assert_contains(uow_errmsg(unit), test_on_sqlite() ? "SQLITE_CONSTRAINT_UNIQUE" : "23505");
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Late'"), 0);
}

static void version_starts_at_one_on_insert(void **state) {
  test_world *w = *state;
  char cond[256];
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, "Versions");
  c->version = 42; /* the library owns the version */
  UOK(unit, uow_commit(unit));
  int64_t id = c->id;
  assert_int_equal(c->version, 1);
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "courses", "id = %lld AND version = 1", (long long)id), 1);

  unit = begin(w->env);
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  assert_int_equal(c->version, 1);
  c->seats = 5;
  UOK(unit, uow_commit(unit));
  assert_int_equal(c->version, 2);
  uow_end(unit);
  assert_int_equal(
      COUNT(w->env, "courses", "id = %lld AND version = 2 AND seats = 5", (long long)id), 1);
}

/* ---- change tracking ---- */

static void only_changed_columns_are_written(void **state) {
  test_world *w = *state;
  char cond[256];

  /* The email changes in the store behind the loaded object's back (uow_exec does
   * not refresh objects); the unit then changes only the score. */
  int64_t id = seed_profile(w->env, "before@example.com", 1.0);
  uow_unit *a = begin(w->env);
  profile *p = NULL;
  UOK(a, uow_get(a, &profile_entity, &id, (void **)&p));
  uow_value params[] = {uow_text("exec@example.com"), uow_int64(id)};
  UOK(a, uow_exec(a, "main", "UPDATE profiles SET email = ? WHERE id = ?", params, 2));
  assert_string_equal(p->email, "before@example.com");
  p->score = 5.0;
  UOK(a, uow_commit(a));
  uow_end(a);
  assert_int_equal(COUNT(w->env, "profiles",
                         "id = %lld AND email = 'exec@example.com' AND score = 5", (long long)id),
                   1);

  /* Two units: B changes the email and commits, then A, which changed only the score. */
  id = seed_profile(w->env, "two@example.com", 1.0);
  a = begin(w->env);
  UOK(a, uow_get(a, &profile_entity, &id, (void **)&p));
  p->score = 7.0;
  uow_unit *b = begin(test_world_other(w, NULL));
  profile *q = NULL;
  UOK(b, uow_get(b, &profile_entity, &id, (void **)&q));
  q->email = dup(b, "b@example.com");
  UOK(b, uow_commit(b));
  uow_end(b);
  if (test_on_sqlite()) {
    /* SQLite transactions are serializable: A read before B committed, so A may
     * not write at all. Either way B's email must survive. */
    UCODE(a, UOW_ECONFLICT, uow_commit(a));
    uow_end(a);
    assert_int_equal(COUNT(w->env, "profiles",
                           "id = %lld AND email = 'b@example.com' AND score = 1", (long long)id),
                     1);
  } else {
    UOK(a, uow_commit(a));
    uow_end(a);
    assert_int_equal(COUNT(w->env, "profiles",
                           "id = %lld AND email = 'b@example.com' AND score = 7", (long long)id),
                     1);
  }
}

static void noop_change_writes_nothing_and_keeps_version(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "noop@example.com", "Noop", 3.5);

  /* Another unit holds the row's write lock: any write by the no-op unit would
   * fail (SQLite: busy after 50 ms; PostgreSQL: lock timeout) instead of committing. */
  uow_unit *holder = NULL;
  EOK(w->env, uow_begin(w->env, &holder));
  user *locked = NULL;
  UOK(holder, uow_get_ex(holder, &user_entity, &id, UOW_FOR_UPDATE, (void **)&locked));

  uow_unit *unit = begin(test_world_other(w, "?busy_timeout=50"));
  if (!test_on_sqlite())
    UOK(unit, uow_exec(unit, "main", "SET LOCAL lock_timeout = '200ms'", NULL, 0));
  user *u = get_user(unit, id);
  u->score = 3.5;
  u->name = dup(unit, "Noop"); /* another pointer, the same text */
  u->email = dup(unit, "noop@example.com");
  u->score = 9.0;
  u->score = 3.5; /* back to what it was */
  UOK(unit, uow_commit(unit));
  assert_int_equal(u->version, 1);
  uow_end(unit);
  uow_end(holder);

  assert_int_equal(COUNT(w->env, "users", "id = %lld AND version = 1", (long long)id), 1);
}

static void second_writer_of_a_versioned_row_gets_conflict(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "race@example.com", "Race", 1.0);
  uow_unit *first = begin(w->env);
  uow_unit *second = begin(w->env);
  user *a = get_user(first, id);
  user *b = get_user(second, id);
  assert_ptr_not_equal(a, b); /* one object per unit */
  a->score = 10.0;
  b->score = 20.0;
  UOK(first, uow_commit(first));
  uow_end(first);
  UCODE(second, UOW_ECONFLICT, uow_commit(second));
  assert_contains(uow_errmsg(second), "store 'main'");
  UOK(second, uow_rollback(second));
  uow_end(second);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND score = 10 AND version = 2", (long long)id), 1);

  uow_unit *third = begin(w->env);
  user *c = get_user(third, id);
  assert_int_equal(c->version, 2);
  assert_true(c->score == 10.0);
  c->score = 30.0;
  UOK(third, uow_commit(third));
  uow_end(third);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND score = 30 AND version = 3", (long long)id), 1);
}

static void in_place_text_edit_is_detected(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "inplace@example.com", "Mary", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  u->name[0] = 'G'; /* loaded text belongs to the unit; the snapshot has its own copy */
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND name = 'Gary' AND version = 2", (long long)id), 1);
}

/* ---- deletes ---- */

static void delete_removes_row(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "delete@example.com", "Delete", 1.0);
  int64_t kept = seed_user(w->env, "kept@example.com", "Kept", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  UOK(unit, uow_delete(unit, u));
  UOK(unit, uow_commit(unit));
  assert_string_equal(u->email, "delete@example.com"); /* memory lives until uow_end */
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "users", "id = %lld", (long long)id), 0);
  assert_int_equal(COUNT(w->env, "users", "id = %lld", (long long)kept), 1);
}

static void get_after_delete_in_same_unit_is_notfound(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "gone@example.com", "Gone", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  UOK(unit, uow_delete(unit, u));
  void *out = &out;
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &out));
  assert_null(out);
  UOK(unit, uow_flush(unit));
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &out));
  void **rows = NULL;
  size_t count = 99;
  uow_value key = uow_int64(id);
  UOK(unit, uow_find(unit, &user_entity, "id = ?", &key, 1, &rows, &count));
  assert_int_equal(count, 0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

static void deleting_a_new_object_forgets_it(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  user *u = new_user(unit, "never@example.com", "Never", 1.0);
  UOK(unit, uow_delete(unit, u));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0);
}

static void delete_and_new_with_same_key_becomes_update(void **state) {
  test_world *w = *state;
  char cond[256];

  /* Unversioned, explicit key. */
  uow_unit *unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 7;
  n->body = dup(unit, "old");
  n->weight = 1.0;
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  unit = begin(w->env);
  int64_t key = 7;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&n));
  UOK(unit, uow_delete(unit, n));
  note *m = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&m));
  m->id = 7;
  m->body = dup(unit, "new");
  m->weight = 2.0;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "notes", NULL), 1);
  assert_int_equal(test_count(w->env, "notes", "id = 7 AND body = 'new' AND weight = 2"), 1);

  /* Versioned: the replacing object continues the row's version. */
  int64_t id = seed_course(w->env, "Old title", 3);
  unit = begin(w->env);
  course *c = NULL;
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  UOK(unit, uow_delete(unit, c));
  course *d = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&d));
  d->id = id;
  d->title = dup(unit, "New title");
  d->seats = 4;
  UOK(unit, uow_commit(unit));
  assert_int_equal(d->version, 2);
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "courses", "id = %lld", (long long)id), 1);
  assert_int_equal(COUNT(w->env, "courses",
                         "id = %lld AND title = 'New title' AND seats = 4 AND version = 2",
                         (long long)id),
                   1);
}

/* ---- references and flush order ---- */

static void new_child_gets_generated_key_of_new_parent(void **state) {
  test_world *w = *state;
  char cond[256];
  uow_unit *unit = begin(w->env);
  enrollment *e = NULL;
  course *c = NULL;
  /* The child is created first: the flush must still insert the parent first. */
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, "Parent");
  e->learner = dup(unit, "ann");
  e->course = c;
  UOK(unit, uow_commit(unit));
  assert_true(c->id > 0);
  assert_true(e->id > 0);
  assert_int_equal(e->course_id, c->id);
  int64_t course_id = c->id, enrollment_id = e->id;
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "enrollments", "id = %lld AND course_id = %lld",
                         (long long)enrollment_id, (long long)course_id),
                   1);
}

static void child_of_a_loaded_parent_gets_its_key(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t course_id = seed_course(w->env, "Loaded parent", 1);
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
  enrollment *e = NULL;
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->learner = dup(unit, "cy");
  e->course = c;
  UOK(unit, uow_commit(unit));
  assert_int_equal(e->course_id, course_id);
  int64_t id = e->id;
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "enrollments", "id = %lld AND course_id = %lld", (long long)id,
                         (long long)course_id),
                   1);
  assert_int_equal(COUNT(w->env, "courses", "id = %lld AND version = 1", (long long)course_id),
                   1); /* the parent itself did not change */
}

static void new_object_with_the_key_of_a_loaded_one_is_refused(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 5;
  n->body = dup(unit, "stored");
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  /* Loaded in this unit and not deleted: a second object with its key is refused. */
  unit = begin(w->env);
  int64_t key = 5;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&n));
  note *twin = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&twin));
  twin->id = 5;
  twin->body = dup(unit, "twin");
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  uow_end(unit);

  /* Not loaded: the store's primary key refuses it. */
  unit = begin(w->env);
  UOK(unit, uow_new(unit, &note_entity, (void **)&twin));
  twin->id = 5;
  twin->body = dup(unit, "twin");
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  assert_contains(uow_errmsg(unit), test_on_sqlite() ? "SQLITE_CONSTRAINT_PRIMARYKEY" : "23505");
  uow_end(unit);
  assert_int_equal(test_count(w->env, "notes", NULL), 1);
  assert_int_equal(test_count(w->env, "notes", "id = 5 AND body = 'stored'"), 1);
}

static void moving_a_child_to_another_parent_updates_its_reference(void **state) {
  test_world *w = *state;
  char cond[256];
  uow_unit *unit = begin(w->env);
  course *first = NULL, *second = NULL;
  enrollment *e = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&first));
  first->title = dup(unit, "First");
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->learner = dup(unit, "dee");
  e->course = first;
  UOK(unit, uow_commit(unit));
  int64_t enrollment_id = e->id;
  uow_end(unit);

  unit = begin(w->env);
  UOK(unit, uow_get(unit, &enrollment_entity, &enrollment_id, (void **)&e));
  UOK(unit, uow_new(unit, &course_entity, (void **)&second));
  second->title = dup(unit, "Second");
  e->course = second; /* a new parent: inserted first, its key copied at flush */
  UOK(unit, uow_commit(unit));
  assert_int_equal(e->course_id, second->id);
  assert_int_equal(e->version, 2);
  int64_t second_id = second->id;
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "enrollments", "id = %lld AND course_id = %lld AND version = 2",
                         (long long)enrollment_id, (long long)second_id),
                   1);
}

static void deletes_children_before_parents(void **state) {
  test_world *w = *state;
  char cond[256];
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  enrollment *e = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, "Doomed");
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->learner = dup(unit, "bob");
  e->course = c;
  UOK(unit, uow_commit(unit));
  int64_t course_id = c->id, enrollment_id = e->id;
  uow_end(unit);

  /* The foreign key is real: deleting the parent alone is refused. */
  unit = begin(w->env);
  UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
  UOK(unit, uow_delete(unit, c));
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "courses", "id = %lld", (long long)course_id), 1);

  /* Parent loaded and deleted first, child second: the child's DELETE must go first. */
  unit = begin(w->env);
  UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
  UOK(unit, uow_get(unit, &enrollment_entity, &enrollment_id, (void **)&e));
  UOK(unit, uow_delete(unit, c));
  UOK(unit, uow_delete(unit, e));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "courses", NULL), 0);
  assert_int_equal(test_count(w->env, "enrollments", NULL), 0);
}

/* ---- queries ---- */

static void find_binds_parameters(void **state) {
  test_world *w = *state;
  seed_user(w->env, "a@example.com", "Ann", 1.0);
  seed_user(w->env, "b@example.com", "Bob", 2.0);
  uow_unit *unit = begin(w->env);
  void **rows = NULL;
  size_t count = 99;
  uow_value evil = uow_text("x' OR 1=1 --");
  UOK(unit, uow_find(unit, &user_entity, "email = ?", &evil, 1, &rows, &count));
  assert_int_equal(count, 0);

  uow_value two[] = {uow_text("b@example.com"), uow_double(1.5)};
  UOK(unit, uow_find(unit, &user_entity, "email = ? AND score > ?", two, 2, &rows, &count));
  assert_int_equal(count, 1);
  assert_string_equal(((user *)rows[0])->name, "Bob");

  /* A quote inside the value is data, not syntax. */
  user *q = new_user(unit, "o'hara@example.com", "O'Hara", 3.0);
  uow_value quoted = uow_text("o'hara@example.com");
  UOK(unit, uow_find(unit, &user_entity, "email = ?", &quoted, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_ptr_equal(rows[0], q);
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 2);
}

static void find_returns_the_unit_object_without_overwriting_changes(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "find@example.com", "Find", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  /* The row changes behind the object's back. */
  uow_value key = uow_int64(id);
  UOK(unit, uow_exec(unit, "main", "UPDATE users SET score = 99 WHERE id = ?", &key, 1));
  u->name = dup(unit, "Local"); /* and the object has a change of its own */

  void **rows = NULL;
  size_t count = 0;
  UOK(unit, uow_find(unit, &user_entity, "id = ?", &key, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_ptr_equal(rows[0], u);
  assert_true(u->score == 1.0);
  assert_string_equal(u->name, "Local");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(
      COUNT(w->env, "users", "id = %lld AND name = 'Local' AND score = 99", (long long)id), 1);
}

static void find_sees_pending_changes(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "old@example.com", "Old", 1.0);
  uow_unit *unit = begin(w->env);
  user *fresh = new_user(unit, "pending@example.com", "Pending", 1.0);
  user *old = get_user(unit, id);
  old->score = 50.0;

  void **rows = NULL;
  size_t count = 0;
  uow_value email = uow_text("pending@example.com");
  UOK(unit, uow_find(unit, &user_entity, "email = ?", &email, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_ptr_equal(rows[0], fresh);
  assert_true(fresh->id > 0);

  uow_value score = uow_double(49.0);
  UOK(unit, uow_find(unit, &user_entity, "score > ?", &score, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_ptr_equal(rows[0], old);

  assert_int_equal(test_count(w->env, "users", "email = 'pending@example.com'"), 0);
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'pending@example.com'"), 0);
  assert_int_equal(test_count(w->env, "users", "score = 1"), 1);
}

static void find_accepts_order_by_and_limit(void **state) {
  test_world *w = *state;
  seed_user(w->env, "o1@example.com", "One", 1.0);
  seed_user(w->env, "o2@example.com", "Two", 2.0);
  seed_user(w->env, "o3@example.com", "Three", 3.0);
  uow_unit *unit = begin(w->env);
  void **rows = NULL;
  size_t count = 0;
  uow_value min = uow_double(0.5);
  UOK(unit, uow_find(unit, &user_entity, "score > ? ORDER BY score DESC LIMIT 2", &min, 1, &rows,
                     &count));
  assert_int_equal(count, 2);
  assert_string_equal(((user *)rows[0])->name, "Three");
  assert_string_equal(((user *)rows[1])->name, "Two");
  UOK(unit, uow_find(unit, &user_entity, NULL, NULL, 0, &rows, &count));
  assert_int_equal(count, 3);
  UOK(unit, uow_find(unit, &user_entity, "", NULL, 0, &rows, &count));
  assert_int_equal(count, 3);
  /* A question mark inside a string literal is not a parameter. */
  uow_value email = uow_text("o1@example.com");
  UOK(unit, uow_find(unit, &user_entity, "name <> '?' AND email = ?", &email, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_string_equal(((user *)rows[0])->name, "One");
  uow_end(unit);
}

static void find_with_bad_sql_is_einval_with_the_store_message(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  void **rows = NULL;
  size_t count = 0;
  UCODE(unit, UOW_EINVAL,
        uow_find(unit, &user_entity, "no_such_column = 1", NULL, 0, &rows, &count));
  assert_contains(uow_errmsg(unit), "store 'main'");
  assert_contains(uow_errmsg(unit), "no_such_column");
  assert_null(rows);
  assert_int_equal(count, 0);
  uow_end(unit);
}

static void find_refuses_a_second_statement(void **state) {
  test_world *w = *state;
  seed_user(w->env, "victim@example.com", "Victim", 1.0);
  uow_unit *unit = begin(w->env);
  void **rows = NULL;
  size_t count = 0;
  int rc = uow_find(unit, &user_entity, "1 = 1; DELETE FROM users", NULL, 0, &rows, &count);
  if (rc != UOW_EINVAL)
    fail_msg("a where clause with a second statement returned %d (%s): %s", rc, uow_strerror(rc),
             uow_errmsg(unit));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
}

/* ---- savepoints ---- */

static void savepoint_rollback_keeps_outer_work(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  new_user(unit, "outer@example.com", "Outer", 1.0);
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "inner@example.com", "Inner", 1.0);
  UOK(unit, uow_flush(unit));
  UOK(unit, uow_rollback_to(unit));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'outer@example.com'"), 1);
  assert_int_equal(test_count(w->env, "users", "email = 'inner@example.com'"), 0);
}

static void savepoint_rollback_restores_changed_members(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "sp@example.com", "Ann", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);

  /* Changed, not flushed. */
  UOK(unit, uow_savepoint(unit));
  u->score = 2.0;
  u->name = dup(unit, "Bob");
  UOK(unit, uow_rollback_to(unit));
  assert_true(u->score == 1.0);
  assert_string_equal(u->name, "Ann");
  assert_int_equal(u->version, 1);

  /* Changed and flushed (the store wrote it, and bumped the version). */
  UOK(unit, uow_savepoint(unit));
  u->score = 3.0;
  u->name = dup(unit, "Cid");
  UOK(unit, uow_flush(unit));
  assert_int_equal(u->version, 2);
  UOK(unit, uow_rollback_to(unit));
  assert_true(u->score == 1.0);
  assert_string_equal(u->name, "Ann");
  assert_string_equal(u->email, "sp@example.com");
  assert_int_equal(u->version, 1);

  /* The object and the store agree again: a later change commits cleanly. */
  u->score = 4.0;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "users",
                         "id = %lld AND score = 4 AND name = 'Ann' AND version = 2", (long long)id),
                   1);
}

static void savepoint_rollback_forgets_objects_created_after_it(void **state) {
  test_world *w = *state;
  int64_t loaded_id = seed_user(w->env, "loaded@example.com", "Loaded", 1.0);
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_savepoint(unit));
  user *x = new_user(unit, "gone1@example.com", "Gone1", 1.0);
  UOK(unit, uow_flush(unit));
  int64_t id = x->id;
  assert_true(id > 0);
  new_user(unit, "gone2@example.com", "Gone2", 1.0); /* not flushed */
  user *l = get_user(unit, loaded_id);               /* loaded after the savepoint */
  l->score = 8.0;
  UOK(unit, uow_rollback_to(unit));

  void *out = &out;
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &out));
  void **rows = NULL;
  size_t count = 99;
  uow_value pattern = uow_text("gone%");
  UOK(unit, uow_find(unit, &user_entity, "email LIKE ?", &pattern, 1, &rows, &count));
  assert_int_equal(count, 0);
  user *again = get_user(unit, loaded_id);
  assert_true(again->score == 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
  assert_int_equal(test_count(w->env, "users", "score = 1"), 1);
}

static void savepoint_rollback_undoes_delete(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "undelete@example.com", "Undelete", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);

  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_delete(unit, u));
  UOK(unit, uow_rollback_to(unit));
  assert_ptr_equal(get_user(unit, id), u);

  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_delete(unit, u));
  UOK(unit, uow_flush(unit));
  void *out = &out;
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, &out));
  UOK(unit, uow_rollback_to(unit));
  assert_ptr_equal(get_user(unit, id), u);
  assert_string_equal(u->email, "undelete@example.com");

  u->score = 6.0; /* still tracked: a change after the rollback is written */
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "users", "id = %lld AND score = 6 AND version = 2", (long long)id),
                   1);
}

static void savepoint_rollback_undoes_a_replacement(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 9;
  n->body = dup(unit, "original");
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  unit = begin(w->env);
  int64_t key = 9;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&n));
  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_delete(unit, n));
  note *m = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&m));
  m->id = 9;
  m->body = dup(unit, "replacement");
  UOK(unit, uow_flush(unit));
  note *got = NULL;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&got));
  assert_ptr_equal(got, m);
  UOK(unit, uow_rollback_to(unit));
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&got));
  assert_ptr_equal(got, n);
  assert_string_equal(n->body, "original");
  n->weight = 3.0; /* the original object is tracked again */
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "notes", NULL), 1);
  assert_int_equal(test_count(w->env, "notes", "id = 9 AND body = 'original' AND weight = 3"), 1);
}

static void savepoint_rollback_recovers_a_failed_flush(void **state) {
  test_world *w = *state;
  seed_user(w->env, "taken@example.com", "Taken", 1.0);
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, "Outer work");
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "taken@example.com", "Again", 1.0);
  UCODE(unit, UOW_ECONSTRAINT, uow_flush(unit));
  void *out = NULL;
  UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out)); /* failed: must roll back first */
  UOK(unit, uow_rollback_to(unit));
  new_user(unit, "fresh@example.com", "Fresh", 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "courses", "title = 'Outer work'"), 1);
  assert_int_equal(test_count(w->env, "users", "email = 'taken@example.com'"), 1);
  assert_int_equal(test_count(w->env, "users", "name = 'Again'"), 0);
  assert_int_equal(test_count(w->env, "users", "email = 'fresh@example.com'"), 1);
}

static void release_keeps_savepoint_work(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "release@example.com", "Release", 1.0);
  uow_unit *unit = begin(w->env);
  UCODE(unit, UOW_EMISUSE, uow_release(unit)); /* none open */
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "released@example.com", "Released", 1.0);
  get_user(unit, id)->score = 8.0;
  UOK(unit, uow_release(unit));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'released@example.com'"), 1);
  assert_int_equal(COUNT(w->env, "users", "id = %lld AND score = 8", (long long)id), 1);
}

static void released_savepoint_work_belongs_to_the_enclosing_one(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "nested@example.com", "Nested", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  new_user(unit, "keep@example.com", "Keep", 1.0);
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "middle@example.com", "Middle", 1.0);
  UOK(unit, uow_savepoint(unit));
  new_user(unit, "innermost@example.com", "Innermost", 1.0);
  u->score = 5.0;
  UOK(unit, uow_flush(unit));
  UOK(unit, uow_release(unit));
  UOK(unit, uow_rollback_to(unit)); /* the outer one: takes the released work with it */
  assert_true(u->score == 1.0);
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit)); /* none left */
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'keep@example.com'"), 1);
  assert_int_equal(test_count(w->env, "users", "email = 'middle@example.com'"), 0);
  assert_int_equal(test_count(w->env, "users", "email = 'innermost@example.com'"), 0);
  assert_int_equal(COUNT(w->env, "users", "id = %lld AND score = 1 AND version = 1", (long long)id),
                   1);
}

/* ---- hooks ---- */

typedef struct hook_probe {
  uow_env *env;
  int calls;
  long rows_seen; /* rows with email hook@example.com, read by the hook */
  char log[16];   /* the tags of the hooks that ran, in order */
} hook_probe;

static void count_hook(void *arg) {
  hook_probe *probe = arg;
  probe->calls++;
  if (probe->env)
    probe->rows_seen = test_count(probe->env, "users", "email = 'hook@example.com'");
}

typedef struct tagged_hook {
  hook_probe *probe;
  char tag;
} tagged_hook;

static void log_hook(void *arg) {
  tagged_hook *hook = arg;
  size_t n = strlen(hook->probe->log);
  if (n + 1 < sizeof(hook->probe->log))
    hook->probe->log[n] = hook->tag;
  hook->probe->calls++;
}

static void hooks_run_only_after_commit(void **state) {
  test_world *w = *state;
  hook_probe probe = {w->env, 0, -1, ""};
  uow_unit *unit = begin(w->env);
  new_user(unit, "hook@example.com", "Hook", 1.0);
  UOK(unit, uow_on_commit(unit, count_hook, &probe));
  UOK(unit, uow_flush(unit));
  assert_int_equal(probe.calls, 0);
  UOK(unit, uow_commit(unit));
  assert_int_equal(probe.calls, 1);
  assert_int_equal(probe.rows_seen, 1); /* the commit was visible when the hook ran */
  uow_end(unit);
  assert_int_equal(probe.calls, 1);
}

static void hooks_are_dropped_on_rollback(void **state) {
  test_world *w = *state;
  hook_probe probe = {NULL, 0, -1, ""};
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_on_commit(unit, count_hook, &probe));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(probe.calls, 0);

  unit = begin(w->env);
  UOK(unit, uow_on_commit(unit, count_hook, &probe));
  uow_end(unit); /* ended without commit */
  assert_int_equal(probe.calls, 0);

  seed_user(w->env, "hookdup@example.com", "Dup", 1.0);
  unit = begin(w->env);
  UOK(unit, uow_on_commit(unit, count_hook, &probe));
  new_user(unit, "hookdup@example.com", "Dup again", 1.0);
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit)); /* a failed commit is no commit */
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(probe.calls, 0);
}

static void hooks_are_dropped_with_their_savepoint(void **state) {
  test_world *w = *state;
  hook_probe probe = {NULL, 0, -1, ""};
  tagged_hook first = {&probe, 'a'}, inner = {&probe, 'b'}, last = {&probe, 'c'};
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_on_commit(unit, log_hook, &first));
  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_on_commit(unit, log_hook, &inner));
  UOK(unit, uow_rollback_to(unit));
  UOK(unit, uow_on_commit(unit, log_hook, &last));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_string_equal(probe.log, "ac");
  assert_int_equal(probe.calls, 2);
}

/* ---- outbox events ---- */

static void emitted_event_is_in_outbox_after_commit(void **state) {
  test_world *w = *state;
  static const char payload[] = {'a', '\0', 'b'};
  uow_unit *unit = begin(w->env);
  new_user(unit, "event@example.com", "Event", 1.0);
  UOK(unit, uow_emit(unit, "user.created", "k1", payload, sizeof(payload)));
  UOK(unit, uow_flush(unit));
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'user.created'"), 1);

  /* A unit that only emits still commits its event. */
  unit = begin(w->env);
  UOK(unit, uow_emit(unit, "only.event", NULL, NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'only.event'"), 1);

  unit = begin(w->env);
  void **rows = NULL;
  size_t count = 0;
  uow_value topic = uow_text("user.created");
  UOK(unit, uow_find(unit, &outbox_event_entity, "topic = ?", &topic, 1, &rows, &count));
  assert_int_equal(count, 1);
  outbox_event *ev = rows[0];
  assert_string_equal(ev->kind, "event");
  assert_non_null(ev->event_key);
  assert_string_equal(ev->event_key, "k1");
  assert_int_equal(ev->seq, 1);
  assert_non_null(ev->unit_id);
  assert_true(ev->unit_id[0] != '\0');
  assert_non_null(ev->payload.data);
  assert_int_equal(ev->payload.size, sizeof(payload));
  assert_memory_equal(ev->payload.data, payload, sizeof(payload));

  topic = uow_text("only.event");
  UOK(unit, uow_find(unit, &outbox_event_entity, "topic = ?", &topic, 1, &rows, &count));
  assert_int_equal(count, 1);
  assert_null(((outbox_event *)rows[0])->event_key);
  uow_end(unit);
}

static void emitted_event_is_gone_after_rollback(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  new_user(unit, "rolled@example.com", "Rolled", 1.0);
  UOK(unit, uow_emit(unit, "user.created", "k", "x", 1));
  UOK(unit, uow_flush(unit));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);

  unit = begin(w->env);
  UOK(unit, uow_emit(unit, "ended.event", NULL, "y", 1));
  uow_end(unit);

  seed_user(w->env, "eventdup@example.com", "Dup", 1.0);
  unit = begin(w->env);
  UOK(unit, uow_emit(unit, "failed.event", NULL, "z", 1));
  new_user(unit, "eventdup@example.com", "Dup again", 1.0);
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  uow_end(unit);

  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 0);
}

static void event_is_dropped_with_its_savepoint(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_emit(unit, "kept", NULL, "1", 1));
  UOK(unit, uow_savepoint(unit));
  UOK(unit, uow_emit(unit, "dropped", NULL, "2", 1));
  UOK(unit, uow_rollback_to(unit));
  UOK(unit, uow_emit(unit, "after", NULL, "3", 1));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'kept'"), 1);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'dropped'"), 0);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'after'"), 1);
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 2);
}

/* ---- exec ---- */

static void exec_runs_inside_the_unit_transaction(void **state) {
  test_world *w = *state;
  static const char insert[] = "INSERT INTO tags (name, label) VALUES (?, ?)";
  uow_value params[] = {uow_text("t1"), uow_text("L1")};
  int64_t affected = -1;

  uow_unit *unit = begin(w->env);
  UOK(unit, uow_exec_ex(unit, "main", insert, params, 2, &affected));
  assert_int_equal(affected, 1);
  assert_int_equal(test_count(w->env, "tags", NULL), 0); /* not committed yet */
  tag *t = NULL;
  char *key = "t1";
  UOK(unit, uow_get(unit, &tag_entity, &key, (void **)&t)); /* the unit sees it */
  assert_string_equal(t->label, "L1");
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", NULL), 0);

  unit = begin(w->env);
  UOK(unit, uow_exec(unit, "main", insert, params, 2));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", "name = 't1' AND label = 'L1'"), 1);

  /* Pending changes are flushed before the statement runs. */
  unit = begin(w->env);
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = dup(unit, "t2");
  t->label = dup(unit, "L2");
  uow_value update[] = {uow_text("X"), uow_text("t2")};
  UOK(unit,
      uow_exec_ex(unit, "main", "UPDATE tags SET label = ? WHERE name = ?", update, 2, &affected));
  assert_int_equal(affected, 1);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", "name = 't2' AND label = 'X'"), 1);
}

static void exec_failure_requires_rollback(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  new_user(unit, "beforebad@example.com", "Before", 1.0);
  UCODE(unit, UOW_EINVAL, uow_exec(unit, "main", "UPDATE no_such_table SET x = 1", NULL, 0));
  assert_contains(uow_errmsg(unit), "store 'main'");
  assert_contains(uow_errmsg(unit), "no_such_table");
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0);

  /* Inside a savepoint the unit recovers with rollback_to. */
  unit = begin(w->env);
  new_user(unit, "kept@example.com", "Kept", 1.0);
  UOK(unit, uow_savepoint(unit));
  UCODE(unit, UOW_EINVAL, uow_exec(unit, "main", "UPDATE no_such_table SET x = 1", NULL, 0));
  UOK(unit, uow_rollback_to(unit));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "email = 'kept@example.com'"), 1);
}

/* ---- uow_run ---- */

typedef struct run_probe {
  const char *email;
  int calls;
  int first_result; /* returned by the first call */
  int result;       /* returned by the later calls */
} run_probe;

static int create_user_fn(uow_unit *unit, void *arg) {
  run_probe *probe = arg;
  probe->calls++;
  user *u = NULL;
  int rc = uow_new(unit, &user_entity, (void **)&u);
  if (rc)
    return rc;
  u->email = uow_strdup(unit, probe->email);
  u->name = uow_strdup(unit, "Run");
  if ((rc = uow_flush(unit))) /* written in the unit's transaction, whatever happens next */
    return rc;
  return probe->calls == 1 ? probe->first_result : probe->result;
}

static void run_commits_when_function_returns_zero(void **state) {
  test_world *w = *state;
  run_probe probe = {"run@example.com", 0, 0, 0};
  EOK(w->env, uow_run(w->env, create_user_fn, &probe, NULL));
  assert_int_equal(probe.calls, 1);
  assert_int_equal(test_count(w->env, "users", "email = 'run@example.com'"), 1);
}

static void run_rolls_back_and_returns_the_function_code(void **state) {
  test_world *w = *state;
  run_probe probe = {"runfail@example.com", 0, 7, 7};
  assert_int_equal(uow_run(w->env, create_user_fn, &probe, NULL), 7);
  assert_int_equal(probe.calls, 1);
  assert_int_equal(test_count(w->env, "users", NULL), 0);

  run_probe other = {"runfail@example.com", 0, UOW_ECONSTRAINT, UOW_ECONSTRAINT};
  assert_int_equal(uow_run(w->env, create_user_fn, &other, NULL), UOW_ECONSTRAINT);
  assert_int_equal(other.calls, 1); /* only conflicts are retried */
  assert_int_equal(test_count(w->env, "users", NULL), 0);
}

static void run_retries_a_conflict_and_then_commits(void **state) {
  test_world *w = *state;
  run_probe probe = {"retry@example.com", 0, UOW_ECONFLICT, 0};
  EOK(w->env, uow_run(w->env, create_user_fn, &probe, NULL));
  assert_int_equal(probe.calls, 2);
  /* The first attempt's row was rolled back: one row, not two (and no unique violation). */
  assert_int_equal(test_count(w->env, "users", "email = 'retry@example.com'"), 1);
}

static int always_conflict_fn(uow_unit *unit, void *arg) {
  (void)unit;
  ++*(int *)arg;
  return UOW_ECONFLICT;
}

static void run_gives_up_after_max_attempts(void **state) {
  test_world *w = *state;
  int calls = 0;
  uow_run_options opts = UOW_RUN_OPTIONS_INIT;
  opts.max_attempts = 3;
  opts.backoff_ms = 1;
  assert_int_equal(uow_run(w->env, always_conflict_fn, &calls, &opts), UOW_ECONFLICT);
  assert_int_equal(calls, 3);
}

/* ---- failures and misuse ---- */

static void bad_arguments_are_einval(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  uow_unit *stranger = begin(w->env);
  user *theirs = new_user(stranger, "stranger@example.com", "Stranger", 1.0);
  /* A struct that is not a tracked object, with readable memory around it. */
  static union {
    unsigned char bytes[512];
    user u;
  } loose[2];
  void *out = NULL;
  static const uow_column unmapped_columns[] = {
      UOW_COLUMN(user, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
  };
  static const uow_entity unmapped = UOW_ENTITY(user, "unmapped_users", unmapped_columns);
  int64_t id = 1;
  UCODE(unit, UOW_EINVAL, uow_delete(unit, theirs));
  UCODE(unit, UOW_EINVAL, uow_delete(unit, &loose[1].u));
  UCODE(unit, UOW_EINVAL, uow_delete(unit, NULL));
  UCODE(unit, UOW_EINVAL, uow_emit(unit, NULL, NULL, NULL, 0));
  UCODE(unit, UOW_EINVAL, uow_emit(unit, "", NULL, NULL, 0));
  UCODE(unit, UOW_EINVAL, uow_on_commit(unit, NULL, NULL));
  UCODE(unit, UOW_EINVAL, uow_get(unit, &unmapped, &id, &out));
  UCODE(unit, UOW_EINVAL, uow_exec(unit, "nowhere", "SELECT 1", NULL, 0));
  /* None of that hurt the unit. */
  new_user(unit, "fine@example.com", "Fine", 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  uow_end(stranger);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
  assert_int_equal(test_count(w->env, "users", "email = 'fine@example.com'"), 1);
}

static void unique_violation_leaves_neither_row(void **state) {
  test_world *w = *state;
  seed_user(w->env, "dup@example.com", "First", 1.0);
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = dup(unit, "Neither");
  new_user(unit, "dup@example.com", "Second", 2.0);
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  const char *msg = uow_errmsg(unit);
  assert_contains(msg, "store 'main'");
  assert_contains(msg, "nothing was written");
  assert_contains(msg, test_on_sqlite() ? "SQLITE_CONSTRAINT_UNIQUE" : "23505");
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "courses", NULL), 0);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
  assert_int_equal(test_count(w->env, "users", "name = 'Second'"), 0);
}

/* A flush of thousands of rows goes to the store in slices (1,000 writes on
 * PostgreSQL, 100 on SQLite: docs/guarantees.md); a constraint failing in
 * the last slice still leaves nothing of the earlier ones, and a flush that
 * succeeds writes them all. */
static void flush_in_slices_is_all_or_nothing(void **state) {
  test_world *w = *state;
  enum { ROWS = 2500 };
  char email[64];
  uow_unit *unit = begin(w->env);
  UOK(unit, uow_exec(unit, "main",
                     "INSERT INTO users (id, email, name, score, version) "
                     "VALUES (1, 'taken@example.com', 'Taken', 0, 1)",
                     NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  unit = begin(w->env);
  for (int i = 0; i < ROWS; i++) {
    snprintf(email, sizeof(email), i == ROWS - 1 ? "taken@example.com" : "slice%d@example.com", i);
    new_user(unit, email, "Sliced", 1.0)->id = 10 + i;
  }
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Sliced'"), 0);

  unit = begin(w->env);
  for (int i = 0; i < ROWS; i++) {
    snprintf(email, sizeof(email), "slice%d@example.com", i);
    new_user(unit, email, "Sliced", 1.0)->id = 10 + i;
  }
  UOK(unit, uow_flush(unit)); /* slices, then more work in the same unit */
  user *last = get_user(unit, 10 + ROWS - 1);
  last->score = 2.0;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Sliced'"), ROWS);
  assert_int_equal(test_count(w->env, "users", "name = 'Sliced' AND score = 2"), 1);
}

/* Users named `name` with ids from `first_id` on; the one at `odd_one` (if
 * any) gets `odd_email` or, when that is NULL, the id `odd_id`. */
static void new_users(uow_unit *unit, int rows, const char *name, int64_t first_id, int odd_one,
                      const char *odd_email, int64_t odd_id) {
  char email[64];
  for (int i = 0; i < rows; i++) {
    snprintf(email, sizeof(email), "%s%lld@example.com", name, (long long)(first_id + i));
    bool odd = i == odd_one;
    user *u = new_user(unit, odd && odd_email ? odd_email : email, name, 1.0);
    u->id = odd && !odd_email ? odd_id : first_id + i;
  }
}

/* ---- unit ids ---- */

/* The unit id in the outbox row of the event with key `key`, checked for its
 * shape: the environment's nonce in 16 lowercase hex digits, '-', the unit's
 * number in decimal. Returns the number. */
static unsigned long long outbox_unit_number(test_world *w, const char *key, char *nonce) {
  char sql[128], id[64];
  snprintf(sql, sizeof(sql), "SELECT unit_id FROM uow_outbox WHERE event_key = '%s'", key);
  assert_true(test_text(w->env, sql, id, sizeof(id)));
  size_t len = strlen(id);
  assert_true(len >= 18 && id[16] == '-');
  for (size_t i = 0; i < 16; i++)
    assert_non_null(strchr("0123456789abcdef", id[i]));
  for (size_t i = 17; i < len; i++)
    assert_true(id[i] >= '0' && id[i] <= '9');
  assert_true(id[17] != '0' || len == 18);
  memcpy(nonce, id, 16);
  nonce[16] = '\0';
  return strtoull(id + 17, NULL, 10);
}

static void unit_ids_are_the_nonce_in_hex_and_the_units_number(void **state) {
  test_world *w = *state;
  const char *keys[] = {"first", "second"};
  for (int i = 0; i < 2; i++) {
    uow_unit *unit = begin(w->env);
    UOK(unit, uow_emit(unit, "id.test", keys[i], "x", 1));
    UOK(unit, uow_commit(unit));
    uow_end(unit);
  }
  char nonce1[17], nonce2[17];
  unsigned long long first = outbox_unit_number(w, "first", nonce1);
  unsigned long long second = outbox_unit_number(w, "second", nonce2);
  assert_string_equal(nonce1, nonce2);
  assert_true(first >= 1);
  assert_int_equal(second, first + 1);
}

/* ---- memory kept between units ---- */

static size_t allocator_calls;
static void *counting_malloc(size_t n) {
  allocator_calls++;
  return malloc(n);
}
static void *counting_realloc(void *p, size_t n) {
  allocator_calls++;
  return realloc(p, n);
}
static void counting_free(void *p) {
  allocator_calls += p != NULL;
  free(p);
}

/* A unit of a few new users and an event, committed; the allocator calls
 * its commit made. */
static size_t commit_calls(test_world *w, const char *name, int64_t first_id) {
  uow_unit *unit = begin(w->env);
  new_users(unit, 3, name, first_id, -1, NULL, 0);
  UOK(unit, uow_emit(unit, "user.added", name, name, strlen(name)));
  size_t before = allocator_calls;
  UOK(unit, uow_commit(unit));
  size_t calls = allocator_calls - before;
  uow_end(unit);
  return calls;
}

/* The flush's lists and scratch memory, the arena and the event list are
 * the unit's to keep: once a first unit has made them, a unit like it
 * commits without asking the allocator for anything. */
static void commit_of_a_unit_like_the_last_asks_the_allocator_for_nothing(void **state) {
  test_world *w = *state;
  allocator_calls = 0;
  assert_int_equal(uow_set_allocator(counting_malloc, counting_realloc, counting_free), UOW_OK);
  size_t first = commit_calls(w, "First", 1);
  size_t second = commit_calls(w, "Second", 4);
  size_t third = commit_calls(w, "Third", 7);
  assert_int_equal(uow_set_allocator(NULL, NULL, NULL), UOW_OK);
  print_message("allocator calls of the commits: %zu, %zu, %zu\n", first, second, third);
  assert_true(first > 0);
  assert_int_equal(second, 0);
  assert_int_equal(third, 0);
  assert_int_equal(test_count(w->env, "users", "name = 'Third'"), 3);
  assert_int_equal(test_count(w->env, "uow_outbox", "event_key = 'Third'"), 1);
}

/* Roll back a unit whose flush failed, end it, and find no user named `name`. */
static void roll_back_and_find_none(test_world *w, uow_unit *unit, const char *name) {
  char cond[64];
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  snprintf(cond, sizeof(cond), "name = '%s'", name);
  assert_int_equal(test_count(w->env, "users", cond), 0);
}

/* The connection serves the next unit: `rows` users named `name` commit. */
static void next_unit_commits_users(test_world *w, int rows, const char *name) {
  char cond[64];
  uow_unit *unit = begin(w->env);
  new_users(unit, rows, name, 10, -1, NULL, 0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  snprintf(cond, sizeof(cond), "name = '%s'", name);
  assert_int_equal(test_count(w->env, "users", cond), rows);
}

/* Makes `rows` users named `name`, the one at `taken_at` with a taken e-mail. */
typedef void (*make_users_fn)(uow_unit *unit, int rows, const char *name, int taken_at);

/* For each of the first `ways` next calls (the commit, uow_flush, a query,
 * which flushes first): a unit whose users `make` made, one of them with a
 * taken e-mail, fails that call with UOW_ECONSTRAINT and leaves nothing;
 * then the connection serves the next unit. */
static void refused_at_each_next_write(test_world *w, int ways, int rows, const char *name,
                                       int taken_at, make_users_fn make) {
  seed_user(w->env, "taken@example.com", "Taken", 0);
  for (int next = 0; next < ways; next++) {
    uow_unit *unit = begin(w->env);
    make(unit, rows, name, taken_at);
    void **found = NULL;
    size_t count = 0;
    UCODE(unit, UOW_ECONSTRAINT,
          next == 0   ? uow_commit(unit)
          : next == 1 ? uow_flush(unit)
                      : uow_find(unit, &user_entity, NULL, NULL, 0, &found, &count));
    assert_contains(uow_errmsg(unit), "email");
    roll_back_and_find_none(w, unit, name);
  }
  next_unit_commits_users(w, rows, name);
}

static void make_users_for_one_flush(uow_unit *unit, int rows, const char *name, int taken_at) {
  new_users(unit, rows, name, 10, taken_at, "taken@example.com", 0);
}

/* On PostgreSQL the first slice is still in flight while the next one is
 * made: a constraint it breaks fails the flush all the same, whether the
 * flush is the commit's or uow_flush, and the connection serves the next
 * unit. */
static void constraint_failing_in_an_early_slice_fails_the_flush_and_writes_nothing(void **state) {
  refused_at_each_next_write(*state, 2, 2500, "Early", 10, make_users_for_one_flush);
}

/* A flush that fails on the client after a slice went to the store (a new
 * object with the key of a loaded one) writes nothing, and the slice that
 * was in flight is settled before its memory is freed (AddressSanitizer
 * sees it otherwise). */
static void flush_failing_between_slices_writes_nothing_and_the_next_unit_works(void **state) {
  test_world *w = *state;
  enum { ROWS = 1500 };
  int64_t loaded = seed_user(w->env, "loaded@example.com", "Loaded", 0);
  uow_unit *unit = begin(w->env);
  get_user(unit, loaded);
  new_users(unit, ROWS, "Between", 10, 1200, NULL, loaded);
  UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
  assert_contains(uow_errmsg(unit), "already in this unit");
  roll_back_and_find_none(w, unit, "Between");
  next_unit_commits_users(w, ROWS, "Between");
}

/* A new course whose key the store generates. */
static course *new_course(uow_unit *unit, char *title, int64_t seats) {
  course *c = NULL;
  UOK(unit, uow_new(unit, &course_entity, (void **)&c));
  c->title = title;
  c->seats = seats;
  return c;
}

/* A new enrollment of `parent`, learner "child<i>". */
static enrollment *new_child(uow_unit *unit, course *parent, int i) {
  char learner[32];
  enrollment *e = NULL;
  snprintf(learner, sizeof(learner), "child%d", i);
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->course = parent;
  e->learner = dup(unit, learner);
  return e;
}

/* Every parent has a key from the store, and every child its own parent's. */
static void children_have_their_parents_keys(course *const *parents, enrollment *const *children,
                                             int n) {
  for (int i = 0; i < n; i++) {
    assert_true(parents[i]->id > 0);
    assert_int_equal(children[i]->course_id, parents[i]->id);
  }
}

/* Children made after 1,500 new parents need keys the store generates for a
 * slice that may still be in flight: the flush waits for it, and every
 * child gets its own parent's key. */
static void children_get_the_keys_of_parents_generated_in_an_earlier_slice(void **state) {
  test_world *w = *state;
  enum { ROWS = 1500 };
  static course *parents[ROWS];
  static enrollment *children[ROWS];
  uow_unit *unit = begin(w->env);
  for (int i = 0; i < ROWS; i++)
    parents[i] = new_course(unit, "Slice parent", i);
  for (int i = 0; i < ROWS; i++)
    children[i] = new_child(unit, parents[i], i);
  UOK(unit, uow_commit(unit));
  children_have_their_parents_keys(parents, children, ROWS);
  uow_end(unit);
  /* In the database too: child i belongs to the parent with i seats. */
  assert_int_equal(test_count(w->env, "enrollments",
                              "course_id IN (SELECT id FROM courses WHERE title = 'Slice parent' "
                              "AND seats = CAST(substr(learner, 6) AS INTEGER))"),
                   ROWS);
}

/* ---- uow_send ---- */

/* `rows` users as new_users makes them, handed over with uow_send every
 * `every`; the one at `taken_at` (if any) gets the e-mail of seed_taken. */
static void send_users(uow_unit *unit, int rows, int every, const char *name, int64_t first_id,
                       int taken_at) {
  for (int done = 0; done < rows; done += every) {
    int n = rows - done < every ? rows - done : every;
    new_users(unit, n, name, first_id + done, taken_at - done, "taken@example.com", 0);
    UOK(unit, uow_send(unit));
  }
}

/* Objects sent go into the unit's transaction once each (on SQLite at the
 * commit); changes made to them afterwards, a deletion and objects made
 * after the last send are written by the commit too. */
static void sent_objects_commit_once_and_later_changes_are_written(void **state) {
  test_world *w = *state;
  enum { ROWS = 2500 };
  char cond[64];
  uow_unit *unit = begin(w->env);
  user *changed = new_user(unit, "changed@example.com", "Sent", 1.0);
  user *deleted = new_user(unit, "deleted@example.com", "Sent", 1.0);
  send_users(unit, ROWS, 700, "Sent", 100, -1);
  changed->score = 9.5;
  UOK(unit, uow_delete(unit, deleted));
  new_user(unit, "late@example.com", "Sent", 2.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Sent'"), ROWS + 2);
  assert_int_equal(test_count(w->env, "users", "email = 'changed@example.com' AND score = 9.5"), 1);
  assert_int_equal(test_count(w->env, "users", "email = 'deleted@example.com'"), 0);
  assert_int_equal(test_count(w->env, "users", "email = 'late@example.com'"), 1);
  assert_int_equal(COUNT(w->env, "users", "id BETWEEN 100 AND %d", 100 + ROWS - 1), ROWS);
}

/* A constraint broken by the last slice uow_send sent is no failure of the
 * send on PostgreSQL (the server has not answered yet) nor on SQLite (the
 * INSERT waits for the commit): the next call that writes reports it, be it
 * the commit, a flush or a query (which flushes first), and nothing of the
 * unit remains. */
static void make_users_in_one_send(uow_unit *unit, int rows, const char *name, int taken_at) {
  send_users(unit, rows, rows, name, 10, taken_at);
}

static void
constraint_broken_by_sent_objects_fails_the_next_write_and_writes_nothing(void **state) {
  refused_at_each_next_write(*state, 3, 1500, "Refused", 1400, make_users_in_one_send);
}

/* Objects sent inside a savepoint are dropped by uow_rollback_to, also when
 * the server refused them and has not said so yet; the unit goes on and
 * commits what came before and after. */
static void rollback_to_drops_sent_objects_even_refused_ones_and_the_unit_goes_on(void **state) {
  test_world *w = *state;
  enum { ROWS = 1500 };
  seed_user(w->env, "taken@example.com", "Taken", 0);
  uow_unit *unit = begin(w->env);
  new_user(unit, "before@example.com", "Before", 1.0);
  UOK(unit, uow_savepoint(unit));
  send_users(unit, ROWS, 1000, "Dropped", 10, 1400);
  UOK(unit, uow_rollback_to(unit));
  new_user(unit, "after@example.com", "After", 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Dropped'"), 0);
  assert_int_equal(test_count(w->env, "users", "name IN ('Before', 'After')"), 2);
}

/* Where the store writes ahead (PostgreSQL), objects sent have the keys the
 * store generated when uow_send returns, and their children the parent's;
 * elsewhere (SQLite) uow_send leaves them to the commit, which sets them. */
static void
send_sets_generated_keys_where_the_store_writes_ahead_else_the_commit_does(void **state) {
  test_world *w = *state;
  enum { ROWS = 1200 };
  static course *parents[ROWS];
  static enrollment *children[ROWS];
  uow_unit *unit = begin(w->env);
  for (int i = 0; i < ROWS; i++) {
    parents[i] = new_course(unit, "Sent parent", i);
    children[i] = new_child(unit, parents[i], i);
  }
  UOK(unit, uow_send(unit));
  bool ahead = !test_on_sqlite();
  for (int i = 0; i < ROWS; i++) {
    assert_int_equal(parents[i]->id > 0, ahead);
    assert_int_equal(children[i]->course_id == parents[i]->id && children[i]->id > 0, ahead);
  }
  UOK(unit, uow_commit(unit));
  children_have_their_parents_keys(parents, children, ROWS);
  uow_end(unit);
  assert_int_equal(test_count(w->env, "enrollments",
                              "course_id IN (SELECT id FROM courses WHERE title = 'Sent parent')"),
                   ROWS);
}

static void commit_twice_is_misuse(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  new_user(unit, "twice@example.com", "Twice", 1.0);
  UOK(unit, uow_commit(unit));
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  assert_true(uow_errmsg(unit)[0] != '\0');
  UCODE(unit, UOW_EMISUSE, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
}

static void use_after_commit_is_misuse(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "after@example.com", "After", 1.0);
  hook_probe probe = {NULL, 0, -1, ""};
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  UOK(unit, uow_commit(unit));

  void *out = NULL;
  void **rows = NULL;
  size_t count = 0;
  UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out));
  UCODE(unit, UOW_EMISUSE, uow_get(unit, &user_entity, &id, &out));
  UCODE(unit, UOW_EMISUSE, uow_find(unit, &user_entity, NULL, NULL, 0, &rows, &count));
  UCODE(unit, UOW_EMISUSE, uow_delete(unit, u));
  UCODE(unit, UOW_EMISUSE, uow_flush(unit));
  UCODE(unit, UOW_EMISUSE, uow_exec(unit, "main", "DELETE FROM users", NULL, 0));
  UCODE(unit, UOW_EMISUSE, uow_emit(unit, "late", NULL, NULL, 0));
  UCODE(unit, UOW_EMISUSE, uow_on_commit(unit, count_hook, &probe));
  UCODE(unit, UOW_EMISUSE, uow_savepoint(unit));
  UCODE(unit, UOW_EMISUSE, uow_release(unit));
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit));
  assert_null(uow_strdup(unit, "late"));
  u->score = 5.0;
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(probe.calls, 0);
  assert_int_equal(test_count(w->env, "users", "score = 1"), 1);
  assert_int_equal(test_count(w->env, "uow_outbox", NULL), 0);
}

static void use_after_end_is_misuse(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  uow_end(unit);
  /* No uow_begin in between: that one could reuse the handle. */
  void *out = NULL;
  assert_int_equal(uow_new(unit, &user_entity, &out), UOW_EMISUSE);
  assert_null(out);
  assert_int_equal(uow_commit(unit), UOW_EMISUSE);
  assert_int_equal(uow_rollback(unit), UOW_EMISUSE);
  assert_int_equal(uow_emit(unit, "late", NULL, NULL, 0), UOW_EMISUSE);
  uow_end(unit); /* a second end is harmless */
  assert_int_equal(test_count(w->env, "users", NULL), 0);
}

static void failed_flush_requires_rollback(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "failed@example.com", "Failed", 1.0);
  uow_unit *unit = begin(w->env);
  new_user(unit, "failed@example.com", "Again", 1.0);
  UCODE(unit, UOW_ECONSTRAINT, uow_flush(unit));
  void *out = NULL;
  UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out));
  UCODE(unit, UOW_EMISUSE, uow_get(unit, &user_entity, &id, &out));
  UCODE(unit, UOW_EMISUSE, uow_flush(unit));
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  UCODE(unit, UOW_EMISUSE, uow_rollback_to(unit)); /* no savepoint to go back to */
  UOK(unit, uow_rollback(unit));
  UCODE(unit, UOW_EMISUSE, uow_new(unit, &user_entity, &out)); /* rolled back: done */
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);

  unit = begin(w->env);
  assert_string_equal(get_user(unit, id)->name, "Failed");
  uow_end(unit);
}

/* ---- column types ---- */

static void nullable_blob_and_bool_columns_round_trip(void **state) {
  test_world *w = *state;
  static const unsigned char bytes[] = {1, 0, 2, 0};
  uow_unit *unit = begin(w->env);
  note *a = NULL, *b = NULL, *c = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&a));
  a->id = 1;
  a->body = NULL;
  a->rank = 0; /* nullable: stored as NULL */
  a->weight = 1.5;
  a->pinned = true;
  a->data.data = bytes; /* not the unit's memory: the flush copies what it needs */
  a->data.size = sizeof(bytes);
  UOK(unit, uow_new(unit, &note_entity, (void **)&b));
  b->id = 2;
  b->body = dup(unit, "");
  b->rank = 5;
  b->weight = 0.1;
  b->pinned = false;
  b->data = uow_blobdup(unit, "", 0); /* empty, not NULL */
  assert_non_null(b->data.data);
  UOK(unit, uow_new(unit, &note_entity, (void **)&c));
  c->id = 3;
  c->body = dup(unit, "three");
  c->weight = -2.0;
  c->data.data = NULL; /* SQL NULL */
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  const char *hex = test_on_sqlite() ? "lower(hex(data))" : "encode(data, 'hex')";
  char sql[256], text[64];
  assert_int_equal(test_count(w->env, "notes",
                              "id = 1 AND body IS NULL AND rank IS NULL AND data IS NOT NULL"
                              " AND length(data) = 4 AND (CASE WHEN pinned THEN 1 ELSE 0 END) = 1"),
                   1);
  snprintf(sql, sizeof(sql), "SELECT %s FROM notes WHERE id = 1", hex);
  assert_true(test_text(w->env, sql, text, sizeof(text)));
  assert_string_equal(text, "01000200");
  assert_int_equal(test_count(w->env, "notes",
                              "id = 2 AND body = '' AND rank = 5 AND data IS NOT NULL"
                              " AND length(data) = 0 AND (CASE WHEN pinned THEN 1 ELSE 0 END) = 0"),
                   1);
  assert_int_equal(test_count(w->env, "notes", "id = 3 AND data IS NULL AND body = 'three'"), 1);

  unit = begin(w->env);
  int64_t key = 1;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&a));
  assert_null(a->body);
  assert_int_equal(a->rank, 0);
  assert_true(a->weight == 1.5);
  assert_true(a->pinned);
  assert_non_null(a->data.data);
  assert_int_equal(a->data.size, sizeof(bytes));
  assert_memory_equal(a->data.data, bytes, sizeof(bytes));
  key = 2;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&b));
  assert_non_null(b->body);
  assert_string_equal(b->body, "");
  assert_int_equal(b->rank, 5);
  assert_true(b->weight == 0.1);
  assert_false(b->pinned);
  assert_non_null(b->data.data); /* empty is not NULL */
  assert_int_equal(b->data.size, 0);
  key = 3;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&c));
  assert_null(c->data.data);
  assert_true(c->weight == -2.0);
  assert_false(c->pinned);
  /* Read back unchanged, so nothing is written. */
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

static void setting_members_to_null_writes_null(void **state) {
  test_world *w = *state;
  uow_unit *unit = begin(w->env);
  note *n = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&n));
  n->id = 4;
  n->body = dup(unit, "full");
  n->rank = 3;
  n->data = uow_blobdup(unit, "xyz", 3);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(
      test_count(w->env, "notes",
                 "id = 4 AND body IS NOT NULL AND rank IS NOT NULL AND data IS NOT NULL"),
      1);

  unit = begin(w->env);
  int64_t key = 4;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&n));
  n->body = NULL;
  n->rank = 0;
  n->data.data = NULL;
  n->data.size = 0;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(
      test_count(w->env, "notes", "id = 4 AND body IS NULL AND rank IS NULL AND data IS NULL"), 1);
}

static void extreme_values_round_trip(void **state) {
  test_world *w = *state;
  enum { BIG = 1 << 20 };
  unsigned char *big = test_malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (unsigned char)(i * 7 + (i >> 8));
  char text[4000];
  for (size_t i = 0; i + 1 < sizeof(text); i++)
    text[i] = (char)('a' + i % 26);
  text[sizeof(text) - 1] = '\0';

  uow_unit *unit = begin(w->env);
  note *hi = NULL, *lo = NULL;
  UOK(unit, uow_new(unit, &note_entity, (void **)&hi));
  hi->id = INT64_MAX;
  hi->rank = INT64_MAX;
  hi->weight = 1.7976931348623157e308;
  hi->body = dup(unit, text);
  hi->data.data = big;
  hi->data.size = BIG;
  UOK(unit, uow_new(unit, &note_entity, (void **)&lo));
  lo->id = INT64_MIN;
  lo->rank = INT64_MIN;
  lo->weight = -4.9e-324;
  lo->body = dup(unit, "\xe2\x82\xac \xf0\x9f\x98\x80 \\ % _ \" '");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "notes", NULL), 2);
  assert_int_equal(test_int(w->env, "SELECT length(data) FROM notes WHERE rank > 0"), BIG);

  unit = begin(w->env);
  int64_t key = INT64_MAX;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&hi));
  assert_true(hi->rank == INT64_MAX);
  assert_true(hi->weight == 1.7976931348623157e308);
  assert_string_equal(hi->body, text);
  assert_int_equal(hi->data.size, BIG);
  assert_memory_equal(hi->data.data, big, BIG);
  key = INT64_MIN;
  UOK(unit, uow_get(unit, &note_entity, &key, (void **)&lo));
  assert_true(lo->rank == INT64_MIN);
  assert_true(lo->weight == -4.9e-324);
  assert_string_equal(lo->body, "\xe2\x82\xac \xf0\x9f\x98\x80 \\ % _ \" '");
  UOK(unit, uow_commit(unit)); /* read back exactly: nothing to write */
  uow_end(unit);
  test_free(big);
}

static void text_primary_key_round_trips(void **state) {
  test_world *w = *state;
  static const char name[] = "o'brien \xc3\xa9t\xc3\xa9"; /* a quote and UTF-8 */
  uow_unit *unit = begin(w->env);
  tag *t = NULL, *plain = NULL;
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = dup(unit, name);
  t->label = dup(unit, "first");
  UOK(unit, uow_new(unit, &tag_entity, (void **)&plain));
  plain->name = dup(unit, "plain");
  plain->label = dup(unit, "p");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", "name = 'o''brien \xc3\xa9t\xc3\xa9'"), 1);

  unit = begin(w->env);
  char copy[sizeof(name)];
  memcpy(copy, name, sizeof(name));
  char *key = copy;
  tag *a = NULL, *b = NULL;
  UOK(unit, uow_get(unit, &tag_entity, &key, (void **)&a));
  assert_string_equal(a->name, name);
  assert_string_equal(a->label, "first");
  const char *same = name; /* equal text at another address: the same object */
  UOK(unit, uow_get(unit, &tag_entity, &same, (void **)&b));
  assert_ptr_equal(a, b);
  a->label = dup(unit, "second");
  const char *plain_key = "plain";
  UOK(unit, uow_get(unit, &tag_entity, &plain_key, (void **)&plain));
  UOK(unit, uow_delete(unit, plain));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(
      test_count(w->env, "tags", "name = 'o''brien \xc3\xa9t\xc3\xa9' AND label = 'second'"), 1);
  assert_int_equal(test_count(w->env, "tags", "name = 'plain'"), 0);
}

static void changing_a_loaded_key_is_refused(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_user(w->env, "key@example.com", "Key", 1.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  u->id = id + 1000;
  u->score = 2.0;
  int rc = uow_commit(unit);
  if (rc != UOW_EINVAL && rc != UOW_EMISUSE)
    fail_msg("commit after changing a key returned %d (%s): %s", rc, uow_strerror(rc),
             uow_errmsg(unit));
  assert_contains(uow_errmsg(unit), "key");
  uow_end(unit);
  assert_int_equal(COUNT(w->env, "users", "id = %lld AND score = 1", (long long)id), 1);
  assert_int_equal(COUNT(w->env, "users", "id = %lld", (long long)(id + 1000)), 0);

  unit = begin(w->env);
  tag *t = NULL;
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = dup(unit, "fixed");
  t->label = dup(unit, "l");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  unit = begin(w->env);
  const char *key = "fixed";
  UOK(unit, uow_get(unit, &tag_entity, &key, (void **)&t));
  t->name = dup(unit, "renamed");
  rc = uow_flush(unit);
  if (rc != UOW_EINVAL && rc != UOW_EMISUSE)
    fail_msg("flush after changing a text key returned %d (%s): %s", rc, uow_strerror(rc),
             uow_errmsg(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "tags", "name = 'fixed'"), 1);
  assert_int_equal(test_count(w->env, "tags", "name = 'renamed'"), 0);
}

/* ---- environment set-up ---- */

static void map_rejects_quoted_identifiers(void **state) {
  test_world *w = *state;
  static const uow_column columns[] = {
      UOW_COLUMN(tag, name, UOW_TEXT, UOW_PRIMARY_KEY),
      UOW_COLUMN(tag, label, UOW_TEXT, 0),
  };
  static const uow_entity bad_table = UOW_ENTITY(tag, "users\"; DROP", columns);
  static const uow_column bad_columns[] = {
      UOW_COLUMN(tag, name, UOW_TEXT, UOW_PRIMARY_KEY),
      {"label\" TEXT, \"x", UOW_TEXT, 0, offsetof(tag, label), sizeof(char *), NULL, UOW_NO_MEMBER},
  };
  static const uow_entity bad_column = UOW_ENTITY(tag, "tags_quoted", bad_columns);

  assert_int_equal(uow_env_map(w->env, &bad_table, "main"), UOW_EINVAL);
  assert_true(uow_env_errmsg(w->env)[0] != '\0');
  assert_int_equal(uow_env_map(w->env, &bad_column, "main"), UOW_EINVAL);

  uow_unit *unit = begin(w->env);
  void *out = NULL;
  UCODE(unit, UOW_EINVAL, uow_new(unit, &bad_table, &out)); /* not mapped */
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0); /* still there */
}

static void add_store_rejects_unknown_scheme(void **state) {
  (void)state;
  uow_env *env = NULL;
  assert_int_equal(uow_env_open(NULL, &env), 0);
  assert_int_equal(uow_env_add_store(env, "main", "mysql://localhost/db"), UOW_EINVAL);
  assert_contains(uow_env_errmsg(env), "scheme");
  assert_int_equal(uow_env_add_store(env, "main", "no-scheme-at-all"), UOW_EINVAL);
  assert_int_equal(uow_env_add_store(env, "main", "mysql://bob:s3cret@localhost/db"), UOW_EINVAL);
  assert_null(strstr(uow_env_errmsg(env), "s3cret"));
  assert_int_equal(uow_env_add_store(env, "ma'in", "sqlite::memory:"), UOW_EINVAL);
  /* A failed add leaves the name free. */
  EOK(env, uow_env_add_store(env, "main", "sqlite::memory:"));
  assert_int_equal(uow_env_add_store(env, "main", "sqlite::memory:"), UOW_EINVAL);
  uow_env_close(env);
}

static void add_store_message_hides_the_password(void **state) {
  (void)state;
  static const char *const urls[] = {
      "postgresql://bob:s3cret@127.0.0.1:1/x",
      "postgres://bob:s3cret@127.0.0.1:1/x",
      "postgresql://bob@127.0.0.1:1/x?password=s3cret&connect_timeout=5",
  };
  for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
    uow_env *env = NULL;
    assert_int_equal(uow_env_open(NULL, &env), 0);
    int rc = uow_env_add_store(env, "pg", urls[i]);
    if (rc != UOW_EIO)
      fail_msg("add_store(%s) returned %d (%s), expected UOW_EIO: %s", urls[i], rc,
               uow_strerror(rc), uow_env_errmsg(env));
    const char *msg = uow_env_errmsg(env);
    assert_contains(msg, "'pg'");
    if (strstr(msg, "s3cret"))
      fail_msg("the message shows the password: %s", msg);
    uow_env_close(env);
  }
}

/* ---- several stores ---- */

static void writes_to_two_stores_are_refused_before_anything_is_written(void **state) {
  test_world *w = *state;
  /* An environment of its own on the same database: an entity maps to one store per env. */
  char side1[1200], side2[1200];
  snprintf(side1, sizeof(side1), "sqlite:%s/side1.db", test_dir());
  snprintf(side2, sizeof(side2), "sqlite:%s/side2.db", test_dir());
  uow_env *multi = NULL;
  assert_int_equal(uow_env_open(NULL, &multi), 0);
  EOK(multi, uow_env_add_store(multi, "main", test_url()));
  EOK(multi, uow_env_add_store(multi, "side1", side1));
  EOK(multi, uow_env_add_store(multi, "side2", side2));
  EOK(multi, uow_env_map(multi, &user_entity, "main"));
  EOK(multi, uow_env_map(multi, &tag_entity, "side1"));
  EOK(multi, uow_env_map(multi, &note_entity, "side2"));
  EOK(multi, uow_env_create_schema(multi));

  uow_unit *unit = NULL;
  EOK(multi, uow_begin(multi, &unit));
  new_user(unit, "multi@example.com", "Multi", 1.0);
  tag *t = NULL;
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = dup(unit, "multi");
  t->label = dup(unit, "m");
  if (!test_on_sqlite()) {
    /* PostgreSQL could prepare; two SQLite stores besides it cannot both take part. */
    note *n = NULL;
    UOK(unit, uow_new(unit, &note_entity, (void **)&n));
    n->id = 1;
  }
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  assert_true(uow_errmsg(unit)[0] != '\0');
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 0);
  assert_int_equal(test_count_at(side1, "tags", NULL), 0);
  assert_int_equal(test_count_at(side2, "notes", NULL), 0);

  /* One store at a time is fine: the counts above could have been 1. */
  EOK(multi, uow_begin(multi, &unit));
  UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
  t->name = dup(unit, "alone");
  t->label = dup(unit, "a");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  uow_env_close(multi);
  assert_int_equal(test_count_at(side1, "tags", NULL), 1);
}

/* ---- concurrency ---- */

enum { THREADS = 4, UNITS_PER_THREAD = 50 };

typedef struct counter_job {
  uow_env *env;
  int64_t course_id;
  int failures;
  int last_rc;
} counter_job;

static int bump_seats(uow_unit *unit, void *arg) {
  const counter_job *job = arg;
  course *c = NULL;
  int rc = uow_get(unit, &course_entity, &job->course_id, (void **)&c);
  if (rc)
    return rc;
  c->seats++;
  return 0;
}

static void *counter_thread(void *arg) {
  counter_job *job = arg;
  uow_run_options opts = UOW_RUN_OPTIONS_INIT;
  opts.max_attempts = 200; /* four threads on one row: conflicts are the point */
  opts.max_backoff_ms = 20;
  for (int i = 0; i < UNITS_PER_THREAD; i++) {
    int rc = uow_run(job->env, bump_seats, job, &opts);
    if (rc) {
      job->failures++;
      job->last_rc = rc; /* not uow_env_errmsg(): the other threads may be writing it */
    }
  }
  return NULL;
}

static void threads_share_one_env(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_course(w->env, "Counter", 0);
  pthread_t threads[THREADS];
  counter_job jobs[THREADS];
  for (int i = 0; i < THREADS; i++) {
    memset(&jobs[i], 0, sizeof(jobs[i]));
    jobs[i].env = w->env;
    jobs[i].course_id = id;
    assert_int_equal(pthread_create(&threads[i], NULL, counter_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_join(threads[i], NULL), 0);
  for (int i = 0; i < THREADS; i++)
    if (jobs[i].failures)
      fail_msg("thread %d: %d units failed, the last with %d (the environment's last message: %s)",
               i, jobs[i].failures, jobs[i].last_rc, uow_env_errmsg(w->env));
  assert_int_equal(COUNT(w->env, "courses", "id = %lld AND seats = %d AND version = %d",
                         (long long)id, THREADS * UNITS_PER_THREAD, THREADS * UNITS_PER_THREAD + 1),
                   1);
}

static void concurrent_writer_gets_conflict_not_a_hang(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_profile(w->env, "contended@example.com", 1.0);
  uow_env *other = test_world_other(w, "?busy_timeout=50");
  profile *p = NULL, *q = NULL;
  if (test_on_sqlite()) {
    /* A holds the database's write lock; B, waiting at most 50 ms, gets a conflict. */
    uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
    opts.flags = UOW_FOR_UPDATE;
    uow_unit *a = NULL;
    EOK(w->env, uow_begin_ex(w->env, &opts, &a));
    UOK(a, uow_get(a, &profile_entity, &id, (void **)&p));
    p->score = 2.0;
    UOK(a, uow_flush(a));
    uow_unit *b = begin(other);
    UOK(b, uow_get(b, &profile_entity, &id, (void **)&q));
    q->score = 3.0;
    UCODE(b, UOW_ECONFLICT, uow_commit(b));
    assert_contains(uow_errmsg(b), "SQLITE_BUSY");
    uow_end(b);
    UOK(a, uow_commit(a));
    uow_end(a);
  } else {
    /* Snapshot isolation: B read before A committed, so B's update of the same row
     * (unversioned: only the isolation level can see it) fails to serialize. */
    uow_begin_options opts = UOW_BEGIN_OPTIONS_INIT;
    opts.isolation = UOW_ISOLATION_REPEATABLE_READ;
    uow_unit *a = NULL, *b = NULL;
    EOK(w->env, uow_begin_ex(w->env, &opts, &a));
    EOK(other, uow_begin_ex(other, &opts, &b));
    UOK(a, uow_get(a, &profile_entity, &id, (void **)&p));
    UOK(b, uow_get(b, &profile_entity, &id, (void **)&q));
    p->score = 2.0;
    UOK(a, uow_commit(a));
    uow_end(a);
    q->score = 3.0;
    UCODE(b, UOW_ECONFLICT, uow_commit(b));
    assert_contains(uow_errmsg(b), "40001");
    uow_end(b);
  }
  assert_int_equal(COUNT(w->env, "profiles", "id = %lld AND score = 2", (long long)id), 1);
}

/* ---- closing an environment with units open ---- */

/* uow_env_close with a unit open leaves the environment to that unit: it
 * still commits, uow_begin is refused meanwhile, and uow_end closes and
 * frees it (the sanitizer and valgrind builds see a leak or a use after free). */
static void closing_an_env_with_a_unit_open_leaves_it_to_the_unit(void **state) {
  test_world *w = *state;
  uow_env *env = NULL;
  assert_int_equal(test_env_open_second(NULL, &env), UOW_OK);
  uow_unit *unit = begin(env);
  new_user(unit, "late@example.com", "Late", 1.0);
  uow_env_close(env);
  uow_unit *refused = NULL;
  assert_int_equal(uow_begin(env, &refused), UOW_EMISUSE);
  assert_null(refused);
  assert_contains(uow_env_errmsg(env), "closing");
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", "name = 'Late'"), 1);
}

typedef struct closing_job {
  uow_env *env;
  pthread_mutex_t lock;
  pthread_cond_t changed;
  bool begun;  /* the thread's unit is open */
  bool closed; /* the main thread called uow_env_close */
  int rc;      /* the commit's result */
} closing_job;

static void closing_job_set(closing_job *job, bool *flag) {
  pthread_mutex_lock(&job->lock);
  *flag = true;
  pthread_cond_broadcast(&job->changed);
  pthread_mutex_unlock(&job->lock);
}

static void closing_job_wait(closing_job *job, const bool *flag) {
  pthread_mutex_lock(&job->lock);
  while (!*flag)
    pthread_cond_wait(&job->changed, &job->lock);
  pthread_mutex_unlock(&job->lock);
}

/* Begins a unit, waits for the environment to be closed, then commits and ends it. */
static void *closing_thread(void *arg) {
  closing_job *job = arg;
  uow_unit *unit = NULL;
  job->rc = uow_begin(job->env, &unit);
  user *u = NULL;
  if (!job->rc)
    job->rc = uow_new(unit, &user_entity, (void **)&u);
  if (!job->rc) {
    u->email = uow_strdup(unit, "threaded@example.com");
    u->name = uow_strdup(unit, "Threaded");
  }
  closing_job_set(job, &job->begun);
  closing_job_wait(job, &job->closed);
  if (!job->rc)
    job->rc = uow_commit(unit);
  uow_end(unit);
  return NULL;
}

/* The unit that ends last closes the environment, on its own thread. */
static void unit_on_another_thread_closes_the_env_when_it_ends(void **state) {
  test_world *w = *state;
  closing_job job;
  memset(&job, 0, sizeof(job));
  pthread_mutex_init(&job.lock, NULL);
  pthread_cond_init(&job.changed, NULL);
  assert_int_equal(test_env_open_second(NULL, &job.env), UOW_OK);
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, closing_thread, &job), 0);
  closing_job_wait(&job, &job.begun);
  uow_env_close(job.env);
  closing_job_set(&job, &job.closed);
  assert_int_equal(pthread_join(thread, NULL), 0);
  pthread_cond_destroy(&job.changed);
  pthread_mutex_destroy(&job.lock);
  assert_int_equal(job.rc, UOW_OK);
  assert_int_equal(test_count(w->env, "users", "name = 'Threaded'"), 1);
}

static void for_update_read_takes_the_write_lock_up_front(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_course(w->env, "Locked", 10);
  uow_env *other = test_world_other(w, "?busy_timeout=50");

  uow_unit *a = begin(w->env);
  course *c = NULL;
  UOK(a, uow_get_ex(a, &course_entity, &id, UOW_FOR_UPDATE, (void **)&c));

  /* While A holds it, B cannot take the same lock: a conflict, not a wait. */
  uow_unit *b = begin(other);
  if (!test_on_sqlite())
    UOK(b, uow_exec(b, "main", "SET LOCAL lock_timeout = '100ms'", NULL, 0));
  course *d = NULL;
  UCODE(b, UOW_ECONFLICT, uow_get_ex(b, &course_entity, &id, UOW_FOR_UPDATE, (void **)&d));
  uow_end(b);

  /* A, having locked before anyone else wrote, commits without a conflict. */
  c->seats = 9;
  UOK(a, uow_commit(a));
  uow_end(a);

  b = begin(other);
  UOK(b, uow_get_ex(b, &course_entity, &id, UOW_FOR_UPDATE, (void **)&d));
  assert_int_equal(d->seats, 9);
  d->seats = 8;
  UOK(b, uow_commit(b));
  uow_end(b);
  assert_int_equal(
      COUNT(w->env, "courses", "id = %lld AND seats = 8 AND version = 3", (long long)id), 1);
}

/* ---- uow_fetch: several reads at once ---- */

static void seed_enrollment(uow_env *env, int64_t course_id, const char *learner) {
  uow_unit *unit = begin(env);
  enrollment *e = NULL;
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->course_id = course_id;
  e->learner = dup(unit, learner);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

static course *get_course(uow_unit *unit, int64_t id) {
  course *c = NULL;
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  assert_non_null(c);
  return c;
}

/* ---- flush order ---- */

/* Triggers that log, in a table flush_log, each row the unit's statements
 * update ("u users 3") or delete ("d courses 1"), in statement order. */
static void log_flush_statements(uow_env *env) {
  static const char *const tables[] = {"users", "tags", "courses", "enrollments"};
  static const char *const keys[] = {"id", "name", "id", "id"};
  uow_unit *unit = begin(env);
  if (test_on_sqlite()) {
    UOK(unit, uow_exec(unit, "main",
                       "CREATE TABLE flush_log (n INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT)",
                       NULL, 0));
  } else {
    UOK(unit, uow_exec(unit, "main", "CREATE TABLE flush_log (n SERIAL PRIMARY KEY, what TEXT)",
                       NULL, 0));
    UOK(unit, uow_exec(unit, "main",
                       "CREATE OR REPLACE FUNCTION flush_log_row() RETURNS trigger AS $$ BEGIN "
                       "INSERT INTO flush_log (what) VALUES (CASE TG_OP WHEN 'UPDATE' THEN 'u' "
                       "ELSE 'd' END || ' ' || TG_TABLE_NAME || ' ' || "
                       "(to_jsonb(OLD) ->> TG_ARGV[0])); RETURN NULL; END $$ LANGUAGE plpgsql",
                       NULL, 0));
  }
  for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
    for (int del = 0; del < 2; del++) {
      char sql[512];
      if (test_on_sqlite())
        snprintf(sql, sizeof(sql),
                 "CREATE TRIGGER log_%s_%d AFTER %s ON %s BEGIN INSERT INTO flush_log (what) "
                 "VALUES ('%s %s ' || old.%s); END",
                 tables[i], del, del ? "DELETE" : "UPDATE", tables[i], del ? "d" : "u", tables[i],
                 keys[i]);
      else
        snprintf(sql, sizeof(sql),
                 "CREATE TRIGGER log_%s_%d AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION "
                 "flush_log_row('%s')",
                 tables[i], del, del ? "DELETE" : "UPDATE", tables[i], keys[i]);
      UOK(unit, uow_exec(unit, "main", sql, NULL, 0));
    }
  }
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* The logged statements whose text starts with `prefix`, in order, joined by ", ". */
static void flush_log_of(uow_env *env, const char *prefix, char *out, size_t cap) {
  char sql[512];
  if (test_on_sqlite())
    snprintf(sql, sizeof(sql),
             "SELECT group_concat(what, ', ') FROM (SELECT what FROM flush_log WHERE what LIKE "
             "'%s%%' ORDER BY n)",
             prefix);
  else
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(what, ', ' ORDER BY n) FROM flush_log WHERE what LIKE '%s%%'",
             prefix);
  test_text(env, sql, out, cap);
}

/* DESIGN.md's flush order, whatever order the unit met its objects in:
 * updates in key order (integer and text keys), then deletes, children
 * before their parents, each kind in key order. */
static void flush_updates_in_key_order_and_deletes_children_first(void **state) {
  test_world *w = *state;
  int64_t ids[4];
  for (int i = 0; i < 4; i++) {
    char email[64];
    snprintf(email, sizeof(email), "order%d@example.com", i);
    ids[i] = seed_user(w->env, email, "Order", 1.0);
  }
  int64_t first = seed_course(w->env, "First", 5), second = seed_course(w->env, "Second", 5);
  seed_enrollment(w->env, second, "ada");
  seed_enrollment(w->env, first, "bob");
  static const char *const names[] = {"pear", "apple", "fig"};
  uow_unit *unit = begin(w->env);
  for (int i = 0; i < 3; i++) {
    tag *t = NULL;
    UOK(unit, uow_new(unit, &tag_entity, (void **)&t));
    t->name = dup(unit, names[i]);
    t->label = dup(unit, "new");
  }
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  log_flush_statements(w->env);

  unit = begin(w->env);
  for (int i = 3; i >= 0; i--) /* met in reverse key order */
    get_user(unit, ids[i])->score = 2.0;
  for (int i = 0; i < 3; i++) {
    tag *t = NULL;
    UOK(unit, uow_get(unit, &tag_entity, &names[i], (void **)&t));
    t->label = dup(unit, "changed");
  }
  /* Parents met and deleted before their children. */
  course *parents[] = {get_course(unit, second), get_course(unit, first)};
  void **rows = NULL;
  size_t count = 0;
  UOK(unit, uow_find(unit, &enrollment_entity, "learner IN ('ada', 'bob') ORDER BY learner DESC",
                     NULL, 0, &rows, &count));
  assert_int_equal(count, 2);
  for (size_t i = 0; i < 2; i++)
    UOK(unit, uow_delete(unit, parents[i]));
  for (size_t i = 0; i < count; i++)
    UOK(unit, uow_delete(unit, rows[i]));
  UOK(unit, uow_commit(unit));
  uow_end(unit);

  char got[1024], want[512];
  flush_log_of(w->env, "u users", got, sizeof(got));
  snprintf(want, sizeof(want), "u users %lld, u users %lld, u users %lld, u users %lld",
           (long long)ids[0], (long long)ids[1], (long long)ids[2], (long long)ids[3]);
  assert_string_equal(got, want);
  flush_log_of(w->env, "u tags", got, sizeof(got));
  assert_string_equal(got, "u tags apple, u tags fig, u tags pear");
  flush_log_of(w->env, "d courses", got, sizeof(got));
  snprintf(want, sizeof(want), "d courses %lld, d courses %lld", (long long)first,
           (long long)second);
  assert_string_equal(got, want);
  /* Every update before every delete; the enrollments before the courses, in key order. */
  assert_int_equal(test_int(w->env, "SELECT count(*) FROM flush_log u, flush_log d WHERE "
                                    "u.what LIKE 'u %' AND d.what LIKE 'd %' AND u.n > d.n"),
                   0);
  assert_int_equal(test_int(w->env, "SELECT count(*) FROM flush_log e, flush_log c WHERE "
                                    "e.what LIKE 'd enrollments %' AND c.what LIKE 'd courses %' "
                                    "AND e.n > c.n"),
                   0);
  assert_int_equal(test_int(w->env, "SELECT count(*) FROM flush_log a, flush_log b WHERE "
                                    "a.what LIKE 'd enrollments %' AND b.what LIKE "
                                    "'d enrollments %' AND a.n < b.n AND "
                                    "CAST(substr(a.what, 15) AS INTEGER) > "
                                    "CAST(substr(b.what, 15) AS INTEGER)"),
                   0);
  assert_int_equal(test_count(w->env, "flush_log", "what LIKE 'd enrollments %'"), 2);
}

static void fetch_returns_the_objects_that_get_and_find_return(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Fetched", 10);
  int64_t other = seed_course(w->env, "Other", 10);
  seed_enrollment(w->env, id, "ada");
  seed_enrollment(w->env, id, "bob");
  seed_enrollment(w->env, other, "cy");
  uow_unit *unit = begin(w->env);
  course *c = NULL;
  void **rows = NULL;
  size_t count = 0;
  uow_value params[] = {uow_int64(id)};
  uow_fetch_item items[] = {
      uow_fetch_get(&course_entity, &id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ? ORDER BY learner", params, 1, 0, &rows,
                     &count),
  };
  UOK(unit, uow_fetch(unit, items, 2));
  assert_int_equal(items[0].rc, UOW_OK);
  assert_int_equal(items[1].rc, UOW_OK);
  assert_non_null(c);
  assert_string_equal(c->title, "Fetched");
  assert_int_equal(c->seats, 10);
  assert_int_equal(count, 2);
  assert_string_equal(((enrollment *)rows[0])->learner, "ada");
  assert_string_equal(((enrollment *)rows[1])->learner, "bob");

  /* The identity map holds them: get and find give the same pointers. */
  assert_ptr_equal(get_course(unit, id), c);
  void **again = NULL;
  size_t n = 0;
  UOK(unit,
      uow_find(unit, &enrollment_entity, "course_id = ? ORDER BY learner", params, 1, &again, &n));
  assert_int_equal(n, 2);
  assert_ptr_equal(again[0], rows[0]);
  assert_ptr_equal(again[1], rows[1]);

  /* They are tracked like any other: a change is written at commit. */
  c->seats = 9;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  char cond[256];
  assert_int_equal(
      COUNT(w->env, "courses", "id = %lld AND seats = 9 AND version = 2", (long long)id), 1);
}

static void fetch_does_not_read_an_object_the_unit_holds(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "held@example.com", "Held", 1.0);
  int64_t second = seed_user(w->env, "twice@example.com", "Twice", 2.0);
  uow_unit *unit = begin(w->env);
  user *u = get_user(unit, id);
  /* The row goes away in the unit's own transaction: a read would not find it. */
  uow_value key = uow_int64(id);
  UOK(unit, uow_exec(unit, "main", "DELETE FROM users WHERE id = ?", &key, 1));
  user *a = NULL, *b = NULL;
  uow_fetch_item items[] = {
      uow_fetch_get(&user_entity, &id, UOW_FOR_UPDATE, (void **)&a),
      uow_fetch_get(&user_entity, &id, 0, (void **)&b),
  };
  UOK(unit, uow_fetch(unit, items, 2));
  assert_ptr_equal(a, u);
  assert_ptr_equal(b, u);

  /* Two gets of one key not held yet: read once, one object for both. */
  uow_fetch_item twice[] = {
      uow_fetch_get(&user_entity, &second, 0, (void **)&a),
      uow_fetch_get(&user_entity, &second, UOW_FOR_UPDATE, (void **)&b),
  };
  UOK(unit, uow_fetch(unit, twice, 2));
  assert_non_null(a);
  assert_ptr_equal(a, b);
  assert_string_equal(a->email, "twice@example.com");

  /* An object deleted in this unit is not found, as for uow_get. */
  UOK(unit, uow_delete(unit, a));
  uow_fetch_item deleted[] = {uow_fetch_get(&user_entity, &second, 0, (void **)&b)};
  UCODE(unit, UOW_ENOTFOUND, uow_fetch(unit, deleted, 1));
  assert_null(b);
  assert_contains(uow_errmsg(unit), "deleted in this unit");
  uow_end(unit);
}

static void fetch_of_a_missing_key_gives_notfound_in_its_item(void **state) {
  test_world *w = *state;
  seed_user(w->env, "present@example.com", "Present", 1.0);
  uow_unit *unit = begin(w->env);
  int64_t missing = 424242;
  void *object = &object;
  void **rows = NULL;
  size_t count = 0;
  uow_fetch_item items[] = {
      uow_fetch_find(&user_entity, NULL, NULL, 0, 0, &rows, &count),
      uow_fetch_get(&user_entity, &missing, 0, &object),
  };
  UCODE(unit, UOW_ENOTFOUND, uow_fetch(unit, items, 2));
  assert_int_equal(items[0].rc, UOW_OK);
  assert_int_equal(items[1].rc, UOW_ENOTFOUND);
  assert_null(object);
  assert_int_equal(count, 1); /* the other items are filled */
  assert_string_equal(((user *)rows[0])->email, "present@example.com");
  assert_contains(uow_errmsg(unit), "fetch item 1 (get user)");
  /* Not finding is an answer, not a failure: the unit goes on. */
  new_user(unit, "after-fetch@example.com", "After", 1.0);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 2);
}

static void fetch_for_update_blocks_a_second_units_writer(void **state) {
  test_world *w = *state;
  char cond[256];
  int64_t id = seed_course(w->env, "Contended", 10);
  uow_env *other = test_world_other(w, "?busy_timeout=50");

  uow_unit *a = begin(w->env);
  course *c = NULL;
  void **rows = NULL;
  size_t count = 0;
  uow_value learner[] = {uow_int64(id), uow_text("ada")};
  uow_fetch_item items[] = {
      uow_fetch_get(&course_entity, &id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ? AND learner = ?", learner, 2, 0, &rows,
                     &count),
  };
  UOK(a, uow_fetch(a, items, 2));
  assert_int_equal(count, 0);

  /* While A holds the lock, B's write of the same row cannot go through. */
  uow_unit *b = begin(other);
  if (!test_on_sqlite())
    UOK(b, uow_exec(b, "main", "SET LOCAL lock_timeout = '100ms'", NULL, 0));
  course *d = get_course(b, id);
  d->seats = 1;
  UCODE(b, UOW_ECONFLICT, uow_commit(b));
  uow_end(b);

  /* A, holding the lock, takes a seat and enrolls without a conflict. */
  c->seats--;
  enrollment *e = NULL;
  UOK(a, uow_new(a, &enrollment_entity, (void **)&e));
  e->course = c;
  e->learner = dup(a, "ada");
  UOK(a, uow_commit(a));
  uow_end(a);
  assert_int_equal(
      COUNT(w->env, "courses", "id = %lld AND seats = 9 AND version = 2", (long long)id), 1);
  assert_int_equal(test_count(w->env, "enrollments", NULL), 1);
}

static void fetch_refuses_bad_input_and_reads_nothing(void **state) {
  test_world *w = *state;
  int64_t id = seed_user(w->env, "untouched@example.com", "Untouched", 1.0);
  static const uow_column unmapped_columns[] = {
      UOW_COLUMN(user, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
  };
  static const uow_entity unmapped = UOW_ENTITY(user, "unmapped_users", unmapped_columns);
  uow_unit *unit = begin(w->env);
  user *u = NULL;
  void **rows = NULL;
  size_t count = 0;
  uow_value one = uow_int64(1);
  uow_fetch_item items[2];
  items[0] = uow_fetch_get(&user_entity, &id, 0, (void **)&u);

  UCODE(unit, UOW_EINVAL, uow_fetch(unit, NULL, 1));
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 0));
  assert_contains(uow_errmsg(unit), "at least 1");
  items[1] = uow_fetch_get(&unmapped, &id, 0, (void **)&u);
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  assert_contains(uow_errmsg(unit), "fetch item 1 (get user): the entity is not mapped");
  assert_int_equal(items[1].rc, UOW_EINVAL);
  assert_null(u);
  items[1] = uow_fetch_get(&user_entity, &id, 0, NULL);
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  items[1] = uow_fetch_find(&user_entity, "id = ?", NULL, 1, 0, &rows, &count);
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  items[1] = uow_fetch_find(&user_entity, "id = ?", &one, 1, 0, NULL, &count);
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  items[1] = uow_fetch_get(&user_entity, &id, 0, (void **)&u);
  items[1].where = "id = ?";
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  assert_contains(uow_errmsg(unit), "fetch item 1 (get user)");

  /* None of that read the row: it is gone in the unit's transaction, and a
   * get now reads the store and finds nothing. */
  uow_value key = uow_int64(id);
  UOK(unit, uow_exec(unit, "main", "DELETE FROM users WHERE id = ?", &key, 1));
  UCODE(unit, UOW_ENOTFOUND, uow_get(unit, &user_entity, &id, (void **)&u));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);

  /* A where clause with the wrong number of parameters: refused by the store
   * before it runs any item, named in the message; the unit must roll back,
   * as after uow_find. */
  unit = begin(w->env);
  uow_value two[] = {uow_int64(id), uow_int64(2)};
  items[0] = uow_fetch_get(&user_entity, &id, 0, (void **)&u);
  items[1] = uow_fetch_find(&user_entity, "id = ?", two, 2, 0, &rows, &count);
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  assert_contains(uow_errmsg(unit), "fetch item 1 (find user)");
  assert_contains(uow_errmsg(unit), "store 'main'");
  assert_int_equal(items[1].rc, UOW_EINVAL);
  assert_null(u);
  assert_null(rows);
  UCODE(unit, UOW_EMISUSE, uow_get(unit, &user_entity, &id, (void **)&u));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
}

/* A store of an older store ABI (2: no read_many; 3: no write_ahead): the
 * store under test, registered again under the scheme "abi<N><scheme>" from
 * a table exactly as long as a table of that ABI, so that reading past it is
 * caught under AddressSanitizer. */
extern const uow_store_ops uow__sqlite_store;
extern const uow_store_ops uow__postgres_store;

static const uow_store_ops *store_under_test(void) {
  return test_on_sqlite() ? &uow__sqlite_store : &uow__postgres_store;
}

static int old_abi_open(const char *url, const uow_store_config *cfg, uow_store_driver **out,
                        uow_status *st) {
  return store_under_test()->open(url + strlen("abiN"), cfg, out, st);
}

static void register_old_store(int abi) {
  static unsigned char *tables[2]; /* registered for the life of the process */
  static char schemes[2][32];
  assert_true(abi == 2 || abi == 3);
  if (tables[abi - 2])
    return;
  size_t size =
      abi == 2 ? offsetof(uow_store_ops, read_many) : offsetof(uow_store_ops, write_ahead);
  uow_store_ops full = *store_under_test();
  snprintf(schemes[abi - 2], sizeof(schemes[0]), "abi%d%s", abi,
           test_on_sqlite() ? "sqlite" : "postgresql");
  full.scheme = schemes[abi - 2];
  full.alias = NULL;
  full.open = old_abi_open;
  full.abi = 1;
  unsigned char *bytes = tables[abi - 2] = malloc(size);
  assert_non_null(bytes);
  memcpy(bytes, &full, size);
  const uow_store_ops *table = (const uow_store_ops *)(void *)bytes;
  assert_int_equal(uow_register_store(table), UOW_EINVAL);
  full.abi = abi;
  memcpy(bytes, &full, size);
  assert_int_equal(uow_register_store(table), UOW_OK);
}

/* An environment whose store "main" is the store under test registered
 * again as "<prefix><abi><scheme>", with `entities` mapped to it. */
static uow_env *reregistered_store_env(const char *prefix, int abi,
                                       const uow_entity *const *entities, size_t n) {
  char url[4096];
  snprintf(url, sizeof(url), "%s%d%s", prefix, abi, test_url());
  uow_env *env = NULL;
  EOK(env, uow_env_open(NULL, &env));
  EOK(env, uow_env_add_store(env, "main", url));
  for (size_t i = 0; i < n; i++)
    EOK(env, uow_env_map(env, entities[i], "main"));
  return env;
}

/* An environment on the store under test, through a table of ABI `abi`. */
static uow_env *old_store_env(int abi) {
  static const uow_entity *const entities[] = {&user_entity, &course_entity, &enrollment_entity};
  register_old_store(abi);
  return reregistered_store_env("abi", abi, entities, 3);
}

/* Stores of ABI 2 and 3 have no write_ahead: a big flush goes to them one
 * slice at a time through write, all of it or none. */
static void big_flush_on_a_store_of_abi_2_or_3_goes_slice_by_slice(void **state) {
  test_world *w = *state;
  enum { ROWS = 2500 };
  seed_user(w->env, "taken@example.com", "Taken", 0);
  for (int abi = 2; abi <= 3; abi++) {
    char name[16], where[32];
    snprintf(name, sizeof(name), "Abi%d", abi);
    snprintf(where, sizeof(where), "name = '%s'", name);
    uow_env *env = old_store_env(abi);
    uow_unit *unit = begin(env);
    new_users(unit, ROWS, name, abi * 10000, 10, "taken@example.com", 0);
    UCODE(unit, UOW_ECONSTRAINT, uow_commit(unit));
    uow_end(unit);
    assert_int_equal(test_count(w->env, "users", where), 0);
    unit = begin(env);
    new_users(unit, ROWS, name, abi * 10000, -1, NULL, 0);
    /* uow_send leaves its objects to the commit: it cannot write ahead. */
    user *generated = new_user(unit, name, name, 1.0);
    UOK(unit, uow_send(unit));
    assert_int_equal(generated->id, 0);
    UOK(unit, uow_commit(unit));
    assert_true(generated->id > 0);
    uow_end(unit);
    assert_int_equal(test_count(w->env, "users", where), ROWS + 1);
    uow_env_close(env);
  }
}

static void fetch_reads_one_item_at_a_time_from_a_store_of_abi_2(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Old store", 10);
  seed_enrollment(w->env, id, "ada");
  uow_env *env = old_store_env(2);

  uow_unit *unit = begin(env);
  course *c = NULL;
  void **rows = NULL;
  size_t count = 0;
  int64_t missing = 424242;
  void *none = &none;
  uow_value params[] = {uow_int64(id)};
  uow_fetch_item items[] = {
      uow_fetch_get(&course_entity, &id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ?", params, 1, 0, &rows, &count),
      uow_fetch_get(&course_entity, &missing, 0, &none),
  };
  UCODE(unit, UOW_ENOTFOUND, uow_fetch(unit, items, 3));
  assert_string_equal(c->title, "Old store");
  assert_int_equal(count, 1);
  assert_string_equal(((enrollment *)rows[0])->learner, "ada");
  assert_null(none);
  assert_int_equal(items[2].rc, UOW_ENOTFOUND);
  assert_ptr_equal(get_course(unit, id), c);

  /* A failing item is named in the message, as with a store of ABI 3. */
  items[1].where = "no_such_column = ?";
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  assert_contains(uow_errmsg(unit), "fetch item 1 (find enrollment)");
  uow_end(unit);
  uow_env_close(env);
}

/* The store under test, registered again as "obj<abi><scheme>" with a write
 * that counts the INSERTs it is given as objects (no values) before passing
 * them on. write_ahead is left out: every slice comes through write. */
static size_t object_inserts, value_inserts;
static size_t write_calls, largest_write; /* calls of write with writes, and the most in one */

static int counting_write(uow_store_conn *conn, uow_write *writes, size_t n, bool commit,
                          uow_status *st) {
  write_calls += n > 0;
  largest_write = n > largest_write ? n : largest_write;
  for (size_t i = 0; i < n; i++) {
    if (writes[i].kind != UOW_WRITE_INSERT)
      continue;
    if (writes[i].values) {
      value_inserts++;
    } else {
      assert_non_null(writes[i].object);
      object_inserts++;
    }
  }
  return store_under_test()->write(conn, writes, n, commit, st);
}

static int counting_open(const char *url, const uow_store_config *cfg, uow_store_driver **out,
                         uow_status *st) {
  return store_under_test()->open(url + strlen("objN"), cfg, out, st);
}

static uow_env *counting_store_env(int abi) {
  static uow_store_ops tables[2]; /* registered for the life of the process */
  static char schemes[2][32];
  uow_store_ops *ops = &tables[abi - 4];
  if (!ops->scheme) {
    *ops = *store_under_test();
    snprintf(schemes[abi - 4], sizeof(schemes[0]), "obj%d%s", abi,
             test_on_sqlite() ? "sqlite" : "postgresql");
    ops->abi = abi;
    ops->scheme = schemes[abi - 4];
    ops->alias = NULL;
    ops->open = counting_open;
    ops->write = counting_write;
    ops->write_ahead = NULL;
    assert_int_equal(uow_register_store(ops), UOW_OK);
  }
  static const uow_entity *const entities[] = {&note_entity};
  return reregistered_store_env("obj", abi, entities, 1);
}

/* Notes with every kind of column, NULLs among them, and an event: the rows
 * the unit writes, as objects to a store of ABI 5 that asks for them
 * (UOW_STORE_OBJECTS: SQLite does, PostgreSQL does not), as values to any
 * other, land the same either way. */
static void inserts_come_as_objects_only_to_a_store_that_asks_and_land_the_same(void **state) {
  test_world *w = *state;
  static const unsigned char bytes[] = {'a', 0, 'b'};
  for (int abi = 4; abi <= 5; abi++) {
    object_inserts = value_inserts = 0;
    uow_env *env = counting_store_env(abi);
    uow_unit *unit = begin(env);
    for (int64_t i = 0; i < 3; i++) {
      note *n = NULL;
      UOK(unit, uow_new(unit, &note_entity, (void **)&n));
      n->id = abi * 10 + i;
      n->body = i == 0 ? NULL : uow_strdup(unit, "body");
      n->rank = i; /* 0: NULL */
      n->weight = i == 2 ? 0.0 : 2.5;
      n->pinned = i == 1;
      n->data = i == 0 ? (uow_blob){NULL, 0} : uow_blobdup(unit, bytes, sizeof(bytes));
    }
    UOK(unit, uow_emit(unit, "notes", "n", bytes, sizeof(bytes)));
    UOK(unit, uow_commit(unit));
    uow_end(unit);
    uow_env_close(env);

    bool objects = abi >= 5 && test_on_sqlite();
    assert_int_equal(object_inserts, objects ? 4 : 0); /* three notes and the outbox row */
    assert_int_equal(value_inserts, objects ? 0 : 4);
    char where[160];
    snprintf(where, sizeof(where),
             "id = %d AND body IS NULL AND rank IS NULL AND weight = 2.5 AND NOT pinned AND "
             "data IS NULL",
             abi * 10);
    assert_int_equal(test_count(w->env, "notes", where), 1);
    snprintf(where, sizeof(where),
             "id = %d AND body = 'body' AND rank = 1 AND pinned AND length(data) = 3",
             abi * 10 + 1);
    assert_int_equal(test_count(w->env, "notes", where), 1);
    snprintf(where, sizeof(where), "id = %d AND weight = 0 AND rank = 2", abi * 10 + 2);
    assert_int_equal(test_count(w->env, "notes", where), 1);
  }
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'notes' AND length(payload) = 3"), 2);
}

/* A store that runs each batch before it returns (no write_ahead) takes a
 * big flush 100 writes at a time: 250 notes and the outbox row come in three
 * batches, the last with the COMMIT, and all of them land. */
static void store_without_write_ahead_takes_a_big_flush_100_writes_at_a_time(void **state) {
  test_world *w = *state;
  write_calls = largest_write = 0;
  uow_env *env = counting_store_env(5);
  uow_unit *unit = begin(env);
  for (int64_t i = 1; i <= 250; i++) {
    note *n = NULL;
    UOK(unit, uow_new(unit, &note_entity, (void **)&n));
    n->id = 1000 + i;
    n->weight = 1.5;
  }
  UOK(unit, uow_emit(unit, "notes", "big", "x", 1));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  uow_env_close(env);
  assert_int_equal(write_calls, 3);
  assert_int_equal(largest_write, 100);
  assert_int_equal(test_count(w->env, "notes", "id > 1000 AND id <= 1250 AND weight = 1.5"), 250);
  assert_int_equal(test_count(w->env, "uow_outbox", "topic = 'notes'"), 1);
}

int main(int argc, char **argv) {
  /* One entry per line: CMake registers a CTest test per entry. */
  // clang-format off
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(unit_rolls_back_when_ended_without_commit, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(inserts_come_as_objects_only_to_a_store_that_asks_and_land_the_same, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(store_without_write_ahead_takes_a_big_flush_100_writes_at_a_time, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(get_returns_same_pointer_twice, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(get_of_missing_key_is_notfound, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(new_object_is_in_the_identity_map_after_flush, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(new_object_gets_generated_key_written_back, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(many_new_objects_get_their_own_keys, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(inserts_with_given_keys_are_batched_around_generated_ones, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(version_starts_at_one_on_insert, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(only_changed_columns_are_written, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(noop_change_writes_nothing_and_keeps_version, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(second_writer_of_a_versioned_row_gets_conflict, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(in_place_text_edit_is_detected, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(delete_removes_row, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(get_after_delete_in_same_unit_is_notfound, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(deleting_a_new_object_forgets_it, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(delete_and_new_with_same_key_becomes_update, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(new_child_gets_generated_key_of_new_parent, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(child_of_a_loaded_parent_gets_its_key, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(moving_a_child_to_another_parent_updates_its_reference, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(new_object_with_the_key_of_a_loaded_one_is_refused, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(deletes_children_before_parents, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_binds_parameters, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_returns_the_unit_object_without_overwriting_changes, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_sees_pending_changes, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_accepts_order_by_and_limit, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_with_bad_sql_is_einval_with_the_store_message, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(find_refuses_a_second_statement, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_keeps_outer_work, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_restores_changed_members, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_forgets_objects_created_after_it, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_undoes_delete, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_undoes_a_replacement, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_recovers_a_failed_flush, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(release_keeps_savepoint_work, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(released_savepoint_work_belongs_to_the_enclosing_one, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(hooks_run_only_after_commit, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(hooks_are_dropped_on_rollback, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(hooks_are_dropped_with_their_savepoint, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(emitted_event_is_in_outbox_after_commit, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(emitted_event_is_gone_after_rollback, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(event_is_dropped_with_its_savepoint, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(exec_runs_inside_the_unit_transaction, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(exec_failure_requires_rollback, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(run_commits_when_function_returns_zero, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(run_rolls_back_and_returns_the_function_code, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(run_retries_a_conflict_and_then_commits, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(run_gives_up_after_max_attempts, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(bad_arguments_are_einval, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(unique_violation_leaves_neither_row, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(flush_in_slices_is_all_or_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(constraint_failing_in_an_early_slice_fails_the_flush_and_writes_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(flush_failing_between_slices_writes_nothing_and_the_next_unit_works, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(commit_of_a_unit_like_the_last_asks_the_allocator_for_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(unit_ids_are_the_nonce_in_hex_and_the_units_number, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(children_get_the_keys_of_parents_generated_in_an_earlier_slice, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(commit_twice_is_misuse, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(use_after_commit_is_misuse, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(use_after_end_is_misuse, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(failed_flush_requires_rollback, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(nullable_blob_and_bool_columns_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(setting_members_to_null_writes_null, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(extreme_values_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(text_primary_key_round_trips, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(changing_a_loaded_key_is_refused, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(map_rejects_quoted_identifiers, test_setup, test_teardown),
      cmocka_unit_test(add_store_rejects_unknown_scheme),
      cmocka_unit_test(add_store_message_hides_the_password),
      cmocka_unit_test_setup_teardown(writes_to_two_stores_are_refused_before_anything_is_written, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(threads_share_one_env, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(concurrent_writer_gets_conflict_not_a_hang, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(closing_an_env_with_a_unit_open_leaves_it_to_the_unit, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(unit_on_another_thread_closes_the_env_when_it_ends, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(for_update_read_takes_the_write_lock_up_front, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(flush_updates_in_key_order_and_deletes_children_first,
                                      test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_returns_the_objects_that_get_and_find_return, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_does_not_read_an_object_the_unit_holds, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_of_a_missing_key_gives_notfound_in_its_item, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_for_update_blocks_a_second_units_writer, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_refuses_bad_input_and_reads_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_reads_one_item_at_a_time_from_a_store_of_abi_2, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(big_flush_on_a_store_of_abi_2_or_3_goes_slice_by_slice, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(sent_objects_commit_once_and_later_changes_are_written, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(constraint_broken_by_sent_objects_fails_the_next_write_and_writes_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(rollback_to_drops_sent_objects_even_refused_ones_and_the_unit_goes_on, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(send_sets_generated_keys_where_the_store_writes_ahead_else_the_commit_does, test_setup, test_teardown),
  };
  // clang-format on
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests_name("unit", tests, NULL, NULL);
}
