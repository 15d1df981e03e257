/*
 * test_postgres.c - what only a server store shows: round trips per unit,
 * large batches as multi-row INSERTs, the classic lost-update race under
 * REPEATABLE READ, a connection lost inside a unit and inside its COMMIT, a
 * pooled connection whose backend died between units, a real server restart
 * between units, and uow_fetch's reads in one round trip. Runs against the
 * PostgreSQL 15 that the CTest fixture starts (scripts/pg-test-server.sh,
 * which also restarts it).
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

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

/* Run DDL (or any statements without parameters) in one committed unit. */
static void run_statements(uow_env *env, const char *const *sql, size_t n) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  for (size_t i = 0; i < n; i++)
    UOK(unit, uow_exec(unit, "main", sql[i], NULL, 0));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* The round trips a connection has made so far (the store counts them). */
static uint64_t round_trips(uow_unit *unit, uow_store_conn **conn) {
  uow_unit_store *us = &unit->stores[0];
  *conn = us->conn;
  return us->store->ops->round_trips(us->conn);
}

/* Begin a unit that has joined the store by reading course `id` into *c;
 * returns the connection's round trips so far. */
static uint64_t begin_joined(test_world *w, int64_t id, uow_unit **unit, course **c,
                             uow_store_conn **conn) {
  EOK(w->env, uow_begin(w->env, unit));
  UOK(*unit, uow_get(*unit, &course_entity, &id, (void **)c));
  return round_trips(*unit, conn);
}

static void flush_and_commit_of_inserts_cost_one_round_trip(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Pipelines", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  uint64_t before = begin_joined(w, id, &unit, &c, &conn);
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

static int64_t seed_profile(uow_env *env, const char *email) {
  uow_unit *unit;
  profile *p;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_new(unit, &profile_entity, (void **)&p));
  p->email = (char *)email;
  UOK(unit, uow_commit(unit));
  int64_t id = p->id;
  uow_end(unit);
  return id;
}

/* The server checks that each UPDATE and DELETE matched its row, so COMMIT
 * needs no answer first and rides in the same pipeline. */
static void commit_of_updates_and_deletes_costs_one_round_trip(void **state) {
  test_world *w = *state;
  int64_t course_id = seed_course(w->env, "Updated", 10);
  int64_t profile_id = seed_profile(w->env, "deleted@example.org");
  uow_unit *unit;
  course *c;
  profile *p;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));   /* versioned */
  UOK(unit, uow_get(unit, &profile_entity, &profile_id, (void **)&p)); /* key only */
  uow_store_conn *conn;
  uint64_t before = round_trips(unit, &conn);
  c->seats = 9;
  UOK(unit, uow_delete(unit, p));
  UOK(unit, uow_commit(unit));
  uint64_t after = unit->stores[0].store->ops->round_trips(conn);
  assert_int_equal(c->version, 2);
  uow_end(unit);
  printf("an UPDATE, a DELETE and COMMIT: %llu round trip(s)\n",
         (unsigned long long)(after - before));
  assert_int_equal(after - before, 1);
  char where[64];
  snprintf(where, sizeof(where), "id = %lld AND seats = 9 AND version = 2", (long long)course_id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
  assert_int_equal(test_count(w->env, "profiles", NULL), 0);
}

/* uow_fetch sends a get and a find in one pipeline: W2's two reads, one round
 * trip, as the hand-written libpq reference sends them. */
static void fetch_of_a_get_and_a_find_costs_one_round_trip(void **state) {
  test_world *w = *state;
  int64_t first = seed_course(w->env, "Joined", 10);
  int64_t id = seed_course(w->env, "Fetched", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  uint64_t before = begin_joined(w, first, &unit, &c, &conn);
  void **rows;
  size_t count;
  uow_value params[] = {uow_int64(id), uow_text("ada")};
  uow_fetch_item items[] = {
      uow_fetch_get(&course_entity, &id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ? AND learner = ?", params, 2, 0, &rows,
                     &count),
  };
  UOK(unit, uow_fetch(unit, items, 2));
  uint64_t fetched = unit->stores[0].store->ops->round_trips(conn);
  assert_string_equal(c->title, "Fetched");
  assert_int_equal(count, 0);
  c->seats = 9;
  enrollment *e;
  UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
  e->course = c;
  e->learner = "ada";
  UOK(unit, uow_commit(unit));
  uint64_t after = unit->stores[0].store->ops->round_trips(conn);
  uow_end(unit);
  printf("a fetch of a get and a find: %llu round trip(s); with the commit: %llu\n",
         (unsigned long long)(fetched - before), (unsigned long long)(after - before));
  assert_int_equal(fetched - before, 1);
  assert_int_equal(after - before, 2);
  assert_int_equal(test_count(w->env, "enrollments", NULL), 1);
}

/* A fetch that the store refuses before running it (a wrong parameter count)
 * sends nothing at all. */
static void fetch_with_a_bad_item_sends_nothing(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Refused", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  uint64_t before = begin_joined(w, id, &unit, &c, &conn);
  int64_t other = id + 1;
  void **rows;
  size_t count;
  uow_value params[] = {uow_int64(id), uow_int64(2)};
  uow_fetch_item items[] = {
      uow_fetch_get(&course_entity, &other, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ?", params, 2, 0, &rows, &count),
  };
  UCODE(unit, UOW_EINVAL, uow_fetch(unit, items, 2));
  assert_contains(uow_errmsg(unit), "fetch item 1 (find enrollment)");
  assert_contains(uow_errmsg(unit), "placeholders");
  assert_int_equal(unit->stores[0].store->ops->round_trips(conn) - before, 0);
  uow_end(unit);
}

/* A DATE column read into text: libuow has no binary decoding for it, so the
 * first batch that meets it runs those reads again asking for text. */
typedef struct dated {
  int64_t id;
  char *day;
} dated;
static const uow_column dated_columns[] = {
    UOW_COLUMN(dated, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(dated, day, UOW_TEXT, 0),
};
static const uow_entity dated_entity = UOW_ENTITY(dated, "dated", dated_columns);

static void fetch_reads_a_type_without_binary_decoding_again_as_text(void **state) {
  test_world *w = *state;
  static const char *const ddl[] = {
      "DROP TABLE IF EXISTS dated",
      "CREATE TABLE dated (id BIGINT PRIMARY KEY, day DATE NOT NULL)",
      "INSERT INTO dated VALUES (1, '2024-01-02'), (2, '2024-03-04')",
  };
  run_statements(w->env, ddl, 3);
  EOK(w->env, uow_env_map(w->env, &dated_entity, "main"));
  int64_t id = seed_course(w->env, "Dated", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  uint64_t before = begin_joined(w, id, &unit, &c, &conn);
  int64_t one = 1;
  dated *d;
  void **rows;
  size_t count;
  uow_value min = uow_int64(0);
  uow_fetch_item items[] = {
      uow_fetch_get(&dated_entity, &one, 0, (void **)&d),
      uow_fetch_find(&dated_entity, "id > ? ORDER BY id", &min, 1, 0, &rows, &count),
  };
  UOK(unit, uow_fetch(unit, items, 2));
  uint64_t first = unit->stores[0].store->ops->round_trips(conn) - before;
  assert_string_equal(d->day, "2024-01-02");
  assert_int_equal(count, 2);
  assert_ptr_equal(rows[0], d);
  assert_string_equal(((dated *)rows[1])->day, "2024-03-04");
  UOK(unit, uow_rollback(unit));
  uow_end(unit);

  /* The statements remember it: the next fetch is one round trip. */
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  before = round_trips(unit, &conn);
  int64_t two = 2;
  items[0] = uow_fetch_get(&dated_entity, &two, 0, (void **)&d);
  UOK(unit, uow_fetch(unit, items, 2));
  uint64_t second = unit->stores[0].store->ops->round_trips(conn) - before;
  assert_string_equal(d->day, "2024-03-04");
  assert_int_equal(count, 2);
  assert_ptr_equal(rows[1], d);
  uow_end(unit);
  printf("fetch meeting a DATE column: %llu round trip(s), then %llu\n", (unsigned long long)first,
         (unsigned long long)second);
  assert_int_equal(first, 3); /* the batch, then each of its two reads again */
  assert_int_equal(second, 1);
}

/* A stale row aborts the pipeline before the COMMIT queued behind it: the
 * unit gets the stale-row conflict (not UOW_EINDOUBT, not the server's
 * division by zero) and nothing of the batch is committed. */
static void stale_row_in_a_pipelined_commit_is_a_conflict_and_commits_nothing(void **state) {
  test_world *w = *state;
  int64_t course_id = seed_course(w->env, "Stale", 10);
  int64_t profile_id = seed_profile(w->env, "gone@example.org");
  for (int deleted = 0; deleted < 2; deleted++) {
    uow_unit *unit, *other;
    course *c, *oc;
    profile *p, *op;
    EOK(w->env, uow_begin(w->env, &unit));
    UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
    UOK(unit, uow_get(unit, &profile_entity, &profile_id, (void **)&p));
    /* Another unit changes the course (first pass) or deletes the profile. */
    EOK(w->env, uow_begin(w->env, &other));
    if (!deleted) {
      UOK(other, uow_get(other, &course_entity, &course_id, (void **)&oc));
      oc->seats = 8;
    } else {
      UOK(other, uow_get(other, &profile_entity, &profile_id, (void **)&op));
      UOK(other, uow_delete(other, op));
    }
    UOK(other, uow_commit(other));
    uow_end(other);
    enrollment *e;
    UOK(unit, uow_new(unit, &enrollment_entity, (void **)&e));
    e->course = c;
    e->learner = "never";
    if (!deleted)
      c->seats = 7;
    else
      UOK(unit, uow_delete(unit, p));
    UCODE(unit, UOW_ECONFLICT, uow_commit(unit));
    printf("%s\n", uow_errmsg(unit));
    char expected[128];
    if (!deleted)
      snprintf(expected, sizeof(expected), "no row \"courses\" with id = %lld and version = 1",
               (long long)course_id);
    else
      snprintf(expected, sizeof(expected), "no row \"profiles\" with id = %lld",
               (long long)profile_id);
    assert_contains(uow_errmsg(unit), expected);
    assert_contains(uow_errmsg(unit), "changed or deleted by another unit");
    UOK(unit, uow_rollback(unit));
    uow_end(unit);
    assert_int_equal(test_count(w->env, "enrollments", NULL), 0);
  }
  char where[64];
  snprintf(where, sizeof(where), "id = %lld AND seats = 8 AND version = 2", (long long)course_id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
  /* The connection that conflicted went back to the pool and still works. */
  uow_unit *unit;
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &course_id, (void **)&c));
  c->seats = 6;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  snprintf(where, sizeof(where), "id = %lld AND seats = 6 AND version = 3", (long long)course_id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
}

/* The store's documented chunk: at most this many rows per multi-row INSERT. */
enum { INSERT_CHUNK_ROWS = 100, BATCH_ROWS = 250 };

/* An AFTER ... FOR EACH STATEMENT trigger with a transition table records,
 * on the server, how many rows each INSERT statement carried: the evidence
 * of multi-row INSERTs comes from PostgreSQL, not from the store's word. */
static void count_insert_statements(uow_env *env) {
  static const char *const sql[] = {
      "DROP TABLE IF EXISTS uow_test_insert_statements",
      "CREATE TABLE uow_test_insert_statements (table_name TEXT NOT NULL, nrows BIGINT NOT NULL)",
      "CREATE OR REPLACE FUNCTION uow_test_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "BEGIN INSERT INTO uow_test_insert_statements SELECT TG_TABLE_NAME, count(*) FROM inserted; "
      "RETURN NULL; END $$",
      "CREATE TRIGGER count_inserts AFTER INSERT ON courses REFERENCING NEW TABLE AS inserted "
      "FOR EACH STATEMENT EXECUTE FUNCTION uow_test_count_insert()",
      "CREATE TRIGGER count_inserts AFTER INSERT ON enrollments REFERENCING NEW TABLE AS inserted "
      "FOR EACH STATEMENT EXECUTE FUNCTION uow_test_count_insert()",
  };
  run_statements(env, sql, sizeof(sql) / sizeof(sql[0]));
}

static void check_insert_statements(uow_env *env, const char *table, long rows) {
  char where[128], sql[256];
  snprintf(where, sizeof(where), "table_name = '%s'", table);
  long statements = test_count(env, "uow_test_insert_statements", where);
  snprintf(sql, sizeof(sql),
           "SELECT coalesce(sum(nrows), 0) FROM uow_test_insert_statements WHERE %s", where);
  int64_t total = test_int(env, sql);
  snprintf(sql, sizeof(sql),
           "SELECT coalesce(max(nrows), 0) FROM uow_test_insert_statements WHERE %s", where);
  int64_t largest = test_int(env, sql);
  printf("%s: %ld rows in %ld INSERT statement(s), the largest of %lld rows\n", table, rows,
         statements, (long long)largest);
  assert_int_equal(total, rows);
  /* Full chunks of the documented size, never more... */
  assert_int_equal(largest, INSERT_CHUNK_ROWS);
  /* ...and far fewer statements than rows: the full chunks plus at most one
   * statement per bit of the remainder (remainders go in power-of-two chunks,
   * and a remainder below 100 has at most 6 bits set). */
  assert_true(statements >= (rows + INSERT_CHUNK_ROWS - 1) / INSERT_CHUNK_ROWS);
  assert_true(statements <= rows / INSERT_CHUNK_ROWS + 6);
}

/* A flush of more than 1,000 writes is one pipeline per slice of 1,000, the
 * COMMIT riding with the last one. Each slice is sent before the replies to
 * the one before it are read, so the server always has work queued: 2,500
 * inserts wait for the server once, and each gets its generated key. */
static void flush_of_2500_inserts_waits_for_the_server_once(void **state) {
  test_world *w = *state;
  enum { ROWS = 2500 };
  int64_t id = seed_course(w->env, "Sliced", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  static enrollment *made[ROWS];
  uint64_t before = begin_joined(w, id, &unit, &c, &conn);
  for (int i = 0; i < ROWS; i++) {
    UOK(unit, uow_new(unit, &enrollment_entity, (void **)&made[i]));
    made[i]->course = c;
    made[i]->learner = "learner";
  }
  UOK(unit, uow_commit(unit));
  uint64_t trips = unit->stores[0].store->ops->round_trips(conn) - before;
  printf("%d inserts with COMMIT: %llu round trip(s)\n", ROWS, (unsigned long long)trips);
  assert_int_equal(trips, 1);
  for (int i = 1; i < ROWS; i++)
    assert_true(made[i]->id > made[i - 1]->id);
  char where[64];
  snprintf(where, sizeof(where), "id BETWEEN %lld AND %lld", (long long)made[0]->id,
           (long long)made[ROWS - 1]->id);
  uow_end(unit);
  assert_int_equal(test_count(w->env, "enrollments", NULL), ROWS);
  assert_int_equal(test_count(w->env, "enrollments", where), ROWS);
}

/* New users Sent<first>.. with ids from `first` on; the one at `taken_at`
 * (if any) gets the e-mail "taken@example.com". uow_send every `every`. */
static void make_users(uow_unit *unit, user **made, int rows, int first, int taken_at, int every) {
  char email[64];
  for (int i = 0; i < rows; i++) {
    snprintf(email, sizeof(email), "sent%d@example.com", first + i);
    UOK(unit, uow_new(unit, &user_entity, (void **)&made[i]));
    made[i]->id = first + i;
    made[i]->email = uow_strdup(unit, i == taken_at ? "taken@example.com" : email);
    assert_non_null(made[i]->email);
    made[i]->name = "Sent";
    if ((i + 1) % every == 0)
      UOK(unit, uow_send(unit));
  }
}

/* The committed user whose e-mail make_users gives to the one at `taken_at`. */
static void seed_taken_user(test_world *w) {
  user *made[1];
  uow_unit *unit = NULL;
  EOK(w->env, uow_begin(w->env, &unit));
  make_users(unit, made, 1, 1, 0, 1);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* uow_send hands each batch of INSERTs to the server and returns without
 * waiting for its answer: five sends of 500 wait for the server not once,
 * and an object sent is found by its key without a read. The commit waits
 * for the last batch, then for COMMIT. */
static void sends_of_inserts_wait_for_no_answer_and_the_commit_waits_twice(void **state) {
  test_world *w = *state;
  enum { ROWS = 2500 };
  int64_t id = seed_course(w->env, "Sent", 10);
  uow_unit *unit;
  course *c;
  uow_store_conn *conn;
  static user *made[ROWS];
  uint64_t before = begin_joined(w, id, &unit, &c, &conn);
  const uow_store_ops *ops = unit->stores[0].store->ops;
  make_users(unit, made, ROWS, 1000, -1, 500);
  uint64_t sending = ops->round_trips(conn) - before;
  int64_t key = 1000;
  user *found = NULL;
  UOK(unit, uow_get(unit, &user_entity, &key, (void **)&found));
  assert_ptr_equal(found, made[0]);
  UOK(unit, uow_commit(unit));
  uint64_t committing = ops->round_trips(conn) - before - sending;
  uow_end(unit);
  printf("%d inserts in 5 sends: %llu round trip(s) sending, %llu committing\n", ROWS,
         (unsigned long long)sending, (unsigned long long)committing);
  assert_int_equal(sending, 0);
  assert_int_equal(committing, 2);
  assert_int_equal(test_count(w->env, "users", "name = 'Sent'"), ROWS);
}

/* A refused INSERT that uow_send left in flight fails the next call that
 * goes to the store, a read here, with the server's message; the unit then
 * only rolls back, and nothing of it remains. */
static void refused_sent_insert_fails_the_next_read_with_the_servers_message(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Refused", 10);
  user *made[10];
  uow_unit *unit = NULL;
  seed_taken_user(w);
  EOK(w->env, uow_begin(w->env, &unit));
  make_users(unit, made, 10, 2, 7, 10);
  course *c = NULL;
  UCODE(unit, UOW_ECONSTRAINT, uow_get(unit, &course_entity, &id, (void **)&c));
  assert_null(c);
  assert_contains(uow_errmsg(unit), "send failed");
  assert_contains(uow_errmsg(unit), "email");
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  UOK(unit, uow_rollback(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 1);
}

/* A unit ended with writes uow_send left in flight, refused or not, rolls
 * back, and its connection serves the next unit. */
static void
unit_ended_with_sent_writes_in_flight_rolls_back_and_its_connection_serves_on(void **state) {
  test_world *w = *state;
  user *made[10];
  uow_unit *unit = NULL;
  seed_taken_user(w);
  for (int refused = 0; refused < 2; refused++) {
    EOK(w->env, uow_begin(w->env, &unit));
    make_users(unit, made, 10, 100 + refused * 10, refused ? 3 : -1, 10);
    uow_end(unit);
  }
  assert_int_equal(test_count(w->env, "users", NULL), 1);
  EOK(w->env, uow_begin(w->env, &unit));
  make_users(unit, made, 10, 200, -1, 5);
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "users", NULL), 11);
}

static void
large_batch_uses_multi_row_inserts_and_keeps_generated_keys_in_creation_order(void **state) {
  test_world *w = *state;
  count_insert_statements(w->env);
  course *courses[BATCH_ROWS];
  enrollment *enrollments[BATCH_ROWS];
  int64_t course_ids[BATCH_ROWS], enrollment_ids[BATCH_ROWS];
  uow_unit *unit;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_exec(unit, "main", "SELECT 1", NULL, 0)); /* joins the store */
  uow_store_conn *conn;
  uint64_t before = round_trips(unit, &conn);
  /* Every parent first, then every child: the children need the parents'
   * generated keys, so the flush cuts the batch once, between the two runs. */
  for (int i = 0; i < BATCH_ROWS; i++) {
    char title[32];
    snprintf(title, sizeof(title), "course %d", i);
    UOK(unit, uow_new(unit, &course_entity, (void **)&courses[i]));
    assert_non_null(courses[i]->title = uow_strdup(unit, title));
    courses[i]->seats = i;
  }
  for (int i = 0; i < BATCH_ROWS; i++) {
    char learner[32];
    snprintf(learner, sizeof(learner), "learner %d", i);
    UOK(unit, uow_new(unit, &enrollment_entity, (void **)&enrollments[i]));
    assert_non_null(enrollments[i]->learner = uow_strdup(unit, learner));
    enrollments[i]->course = courses[i];
  }
  UOK(unit, uow_commit(unit));
  uint64_t trips = unit->stores[0].store->ops->round_trips(conn) - before;
  int64_t course_sum = 0;
  for (int i = 0; i < BATCH_ROWS; i++) {
    course_ids[i] = courses[i]->id;
    enrollment_ids[i] = enrollments[i]->id;
    course_sum += course_ids[i];
    assert_true(course_ids[i] > 0);
    assert_true(enrollment_ids[i] > 0);
    if (i > 0) {
      assert_true(course_ids[i] > course_ids[i - 1]);
      assert_true(enrollment_ids[i] > enrollment_ids[i - 1]);
    }
    assert_int_equal(enrollments[i]->course_id, course_ids[i]);
    assert_int_equal(courses[i]->version, 1);
    assert_int_equal(enrollments[i]->version, 1);
  }
  uow_end(unit);

  /* One statement per chunk of 100 rows, each in its own round trip, would
   * still be far below one per row; pipelining makes it less again. */
  uint64_t bound = 2 * ((BATCH_ROWS + INSERT_CHUNK_ROWS - 1) / INSERT_CHUNK_ROWS) + 1;
  printf("%d courses and %d enrollments with COMMIT: %llu round trip(s), bound %llu\n", BATCH_ROWS,
         BATCH_ROWS, (unsigned long long)trips, (unsigned long long)bound);
  assert_true(trips >= 1);
  assert_true(trips <= bound);
  check_insert_statements(w->env, "courses", BATCH_ROWS);
  check_insert_statements(w->env, "enrollments", BATCH_ROWS);

  /* What the server holds, read with libpq: every row, the keys the objects
   * got, and key order equal to creation order (seats = creation index). */
  assert_int_equal(test_count(w->env, "courses", NULL), BATCH_ROWS);
  assert_int_equal(test_count(w->env, "enrollments", NULL), BATCH_ROWS);
  assert_int_equal(test_count(w->env, "courses", "title = 'course ' || seats AND version = 1"),
                   BATCH_ROWS);
  assert_int_equal(test_int(w->env, "SELECT sum(id) FROM courses"), course_sum);
  assert_int_equal(test_int(w->env, "SELECT min(id) FROM courses"), course_ids[0]);
  assert_int_equal(test_int(w->env, "SELECT max(id) FROM courses"), course_ids[BATCH_ROWS - 1]);
  assert_int_equal(test_int(w->env, "SELECT count(*) FROM (SELECT seats, row_number() OVER "
                                    "(ORDER BY id) - 1 AS position FROM courses) AS ordered "
                                    "WHERE seats = position"),
                   BATCH_ROWS);
  assert_int_equal(test_int(w->env, "SELECT count(*) FROM (SELECT e.learner, c.seats, "
                                    "row_number() OVER (ORDER BY e.id) - 1 AS position "
                                    "FROM enrollments e JOIN courses c ON c.id = e.course_id) "
                                    "AS ordered WHERE learner = 'learner ' || seats "
                                    "AND seats = position"),
                   BATCH_ROWS);

  /* And row by row through a new unit. */
  EOK(w->env, uow_begin(w->env, &unit));
  void **rows;
  size_t count;
  UOK(unit, uow_find(unit, &course_entity, "id > 0 ORDER BY id", NULL, 0, &rows, &count));
  assert_int_equal(count, BATCH_ROWS);
  for (size_t i = 0; i < count; i++) {
    const course *c = rows[i];
    char title[32];
    snprintf(title, sizeof(title), "course %zu", i);
    assert_int_equal(c->id, course_ids[i]);
    assert_string_equal(c->title, title);
    assert_int_equal(c->seats, (int64_t)i);
  }
  UOK(unit, uow_find(unit, &enrollment_entity, "id > 0 ORDER BY id", NULL, 0, &rows, &count));
  assert_int_equal(count, BATCH_ROWS);
  for (size_t i = 0; i < count; i++) {
    const enrollment *e = rows[i];
    char learner[32];
    snprintf(learner, sizeof(learner), "learner %zu", i);
    assert_int_equal(e->id, enrollment_ids[i]);
    assert_int_equal(e->course_id, course_ids[i]);
    assert_string_equal(e->learner, learner);
  }
  uow_end(unit);

  static const char *const cleanup[] = {
      "DROP FUNCTION uow_test_count_insert() CASCADE",
      "DROP TABLE uow_test_insert_statements",
  };
  run_statements(w->env, cleanup, sizeof(cleanup) / sizeof(cleanup[0]));
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
  UCODE(unit, UOW_EIO,
        uow_exec(unit, "main", "SELECT pg_terminate_backend(pg_backend_pid())", NULL, 0));
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
  /* Every other backend of the database ends, as when the server restarts.
   * The timeout makes pg_terminate_backend wait until they are gone, so that
   * they died between the units: a backend still dying when the next unit
   * reuses its connection is another case (see the restart test). */
  EOK(other, uow_begin(other, &unit));
  UOK(unit, uow_exec(unit, "main",
                     "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
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

/*
 * Cut the connection inside COMMIT: a DEFERRABLE INITIALLY DEFERRED
 * constraint trigger fires at COMMIT, and its function ends its own backend.
 * The server answers COMMIT with a FATAL (57P01) and closes the socket: the
 * client cannot tell a commit lost before its commit record from one lost
 * after it, so the only honest answer is UOW_EINDOUBT. With this trigger the
 * FATAL comes before the commit record, so the server rolls the transaction
 * back; the tests check that on the server, but the client could not know.
 * The pg_sleep only makes sure the termination is acted on inside the trigger.
 */
static void cut_connection_at_commit(uow_env *env, const char *table, const char *event) {
  char trigger[256];
  snprintf(trigger, sizeof(trigger),
           "CREATE CONSTRAINT TRIGGER cut_at_commit AFTER %s ON %s DEFERRABLE INITIALLY DEFERRED "
           "FOR EACH ROW EXECUTE FUNCTION uow_test_cut_at_commit()",
           event, table);
  const char *const sql[] = {
      "CREATE OR REPLACE FUNCTION uow_test_cut_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(10); "
      "RETURN NULL; END $$",
      trigger,
  };
  run_statements(env, sql, sizeof(sql) / sizeof(sql[0]));
}

static void stop_cutting_connections(uow_env *env) {
  static const char *const sql[] = {"DROP FUNCTION uow_test_cut_at_commit() CASCADE"};
  run_statements(env, sql, 1);
}

/* The COMMIT rides in the same pipeline as the INSERTs. */
static void connection_lost_during_commit_gives_eindoubt_and_the_next_unit_works(void **state) {
  test_world *w = *state;
  cut_connection_at_commit(w->env, "profiles", "INSERT");
  uow_unit *unit;
  profile *p;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_new(unit, &profile_entity, (void **)&p));
  p->email = "in-doubt@example.org";
  UCODE(unit, UOW_EINDOUBT, uow_commit(unit));
  printf("%s\n", uow_errmsg(unit));
  assert_contains(uow_errmsg(unit), "store 'main'");
  assert_contains(uow_errmsg(unit), "unknown");
  assert_contains(uow_errmsg(unit), "57P01"); /* the server's word: the session was ended */
  UCODE(unit, UOW_EMISUSE, uow_commit(unit));
  uow_end(unit);
  /* What happened on the server: the FATAL came before the commit record,
   * so the row is not there. */
  assert_int_equal(test_count(w->env, "profiles", NULL), 0);

  stop_cutting_connections(w->env);
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_new(unit, &profile_entity, (void **)&p));
  p->email = "after@example.org";
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  assert_int_equal(test_count(w->env, "profiles", "email = 'after@example.org'"), 1);
  assert_int_equal(test_count(w->env, "profiles", NULL), 1);
}

/* The UPDATE is flushed first, so COMMIT goes alone in its pipeline. */
static void connection_lost_during_a_commit_sent_alone_gives_eindoubt(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "In doubt", 10);
  cut_connection_at_commit(w->env, "courses", "UPDATE");
  uow_unit *unit;
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  c->seats = 4;
  UOK(unit, uow_flush(unit));
  UCODE(unit, UOW_EINDOUBT, uow_commit(unit));
  assert_contains(uow_errmsg(unit), "unknown");
  uow_end(unit);
  char where[64];
  snprintf(where, sizeof(where), "id = %lld AND seats = 10 AND version = 1", (long long)id);
  assert_int_equal(test_count(w->env, "courses", where), 1);

  stop_cutting_connections(w->env);
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  c->seats = 4;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  snprintf(where, sizeof(where), "id = %lld AND seats = 4 AND version = 2", (long long)id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
}

/* scripts/pg-test-server.sh restart: a fast shutdown (every session is cut)
 * and a start on the same data, socket and port. */
static void restart_server(void) {
  const char *source = getenv("UOW_SOURCE_DIR");
  const char *servers = getenv("UOW_TEST_PG_DIR");
  if (!source || !*source || !servers || !*servers) {
    printf("UOW_SOURCE_DIR and UOW_TEST_PG_DIR are needed to restart the server\n");
    skip();
  }
  char script[2048];
  snprintf(script, sizeof(script), "%s/scripts/pg-test-server.sh", source);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execlp("bash", "bash", script, "restart", servers, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("%s restart %s failed (status %d)", script, servers, status);
}

static void server_restart_between_units_replaces_the_stale_pooled_connection(void **state) {
  test_world *w = *state;
  int64_t id = seed_course(w->env, "Before the restart", 5);
  uow_store *store = uow__env_store(w->env, "main");
  assert_non_null(store);
  /* The committed unit's connection waits in the pool, a live session. */
  assert_true(store->nidle >= 1);
  uow_store_conn *stale = store->idle[store->nidle - 1];
  assert_true(store->ops->healthy(stale));
  char started[128], restarted[128];
  assert_true(
      test_text(w->env, "SELECT pg_postmaster_start_time()::text", started, sizeof(started)));

  restart_server();

  assert_true(
      test_text(w->env, "SELECT pg_postmaster_start_time()::text", restarted, sizeof(restarted)));
  if (strcmp(started, restarted) == 0)
    fail_msg("the server was not restarted (started at %s)", started);
  /* The pool notices before handing the connection out. */
  assert_false(store->ops->healthy(stale));

  uow_unit *unit;
  course *c;
  EOK(w->env, uow_begin(w->env, &unit));
  UOK(unit, uow_get(unit, &course_entity, &id, (void **)&c));
  assert_string_equal(c->title, "Before the restart");
  assert_int_equal(c->seats, 5);
  c->seats = 6;
  UOK(unit, uow_commit(unit));
  uow_end(unit);
  char where[64];
  snprintf(where, sizeof(where), "id = %lld AND seats = 6 AND version = 2", (long long)id);
  assert_int_equal(test_count(w->env, "courses", where), 1);
}

/* ---- NOTIFY only while a relay listens ---- */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void commit_event(uow_env *env, const char *key) {
  uow_unit *unit;
  EOK(env, uow_begin(env, &unit));
  UOK(unit, uow_emit(unit, "notify.test", key, "x", 1));
  UOK(unit, uow_commit(unit));
  uow_end(unit);
}

/* The notifications `listener` holds once a NOTIFY sent after every earlier
 * commit has arrived: the server queues notifications in commit order. */
static int notifications_so_far(PGconn *listener, PGconn *other) {
  PQclear(PQexec(other, "NOTIFY uow_outbox, 'sentinel'"));
  int count = 0;
  for (;;) {
    assert_int_equal(PQconsumeInput(listener), 1);
    PGnotify *note;
    bool sentinel = false;
    while ((note = PQnotifies(listener)) != NULL) {
      if (strcmp(note->extra, "sentinel") == 0)
        sentinel = true;
      else
        count++;
      PQfreemem(note);
    }
    if (sentinel)
      return count;
    sleep_ms(1);
  }
}

static void commits_notify_only_while_a_relay_listens(void **state) {
  test_world *w = *state;
  const char *url = getenv("UOW_TEST_PG_URL");
  PGconn *listener = PQconnectdb(url), *other = PQconnectdb(url);
  assert_int_equal(PQstatus(listener), CONNECTION_OK);
  assert_int_equal(PQstatus(other), CONNECTION_OK);
  PQclear(PQexec(listener, "LISTEN uow_outbox"));

  /* A new connection notifies and asks: no relay (a listener of another
   * name is not one), so the next commits stay silent. */
  commit_event(w->env, "a");
  assert_int_equal(notifications_so_far(listener, other), 1);
  commit_event(w->env, "b");
  commit_event(w->env, "c");
  assert_int_equal(notifications_so_far(listener, other), 0);

  /* A relay's connection names itself; writers see it at their next check. */
  PQclear(PQexec(listener, "SET application_name = 'uow_relay'"));
  sleep_ms(1100);            /* the check runs at most once a second */
  commit_event(w->env, "d"); /* asks again: a relay listens */
  commit_event(w->env, "e");
  assert_int_equal(notifications_so_far(listener, other), 1);
  commit_event(w->env, "f");
  assert_int_equal(notifications_so_far(listener, other), 1);
  PQfinish(listener);
  PQfinish(other);
}

int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  /* One entry per line: cmake/UowTests.cmake registers each name it finds on a line. */
  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(flush_and_commit_of_inserts_cost_one_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(commits_notify_only_while_a_relay_listens, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(commit_of_updates_and_deletes_costs_one_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_of_a_get_and_a_find_costs_one_round_trip, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_with_a_bad_item_sends_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(fetch_reads_a_type_without_binary_decoding_again_as_text, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(stale_row_in_a_pipelined_commit_is_a_conflict_and_commits_nothing, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(second_repeatable_read_writer_gets_conflict_and_one_change_is_stored, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(connection_lost_inside_a_unit_gives_eio, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(pooled_connection_killed_between_units_is_replaced, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(flush_of_2500_inserts_waits_for_the_server_once, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(sends_of_inserts_wait_for_no_answer_and_the_commit_waits_twice, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(refused_sent_insert_fails_the_next_read_with_the_servers_message, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(unit_ended_with_sent_writes_in_flight_rolls_back_and_its_connection_serves_on, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(large_batch_uses_multi_row_inserts_and_keeps_generated_keys_in_creation_order, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(connection_lost_during_commit_gives_eindoubt_and_the_next_unit_works, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(connection_lost_during_a_commit_sent_alone_gives_eindoubt, test_setup, test_teardown),
      cmocka_unit_test_setup_teardown(server_restart_between_units_replaces_the_stale_pooled_connection, test_setup, test_teardown),
  };
  /* clang-format on */
  return cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
}
