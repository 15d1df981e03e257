/*
 * w_uow.c - the workloads written with libuow, the way its users write them:
 * entities described once, units that read, change plain structs and commit.
 *
 *   bench_uow W1|W2|W3 sqlite PATH | pg URL
 *   bench_uow W4 SQLITE_PATH PG_URL
 *   bench_uow scale                  memory per tracked entity, and how flush and
 *                                    commit grow from 1k to 1M tracked entities
 *                                    (in-memory SQLite: the library's own cost)
 *
 * Output lines are described in bench.h; `scale` prints its own (see scale()).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "uow.h"

/* ---- the model ---- */

typedef struct user {
  int64_t id;
  char *email;
  char *name;
  double score;
  int64_t version;
} user;
static const uow_column user_columns[] = {
    UOW_COLUMN(user, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(user, email, UOW_TEXT, UOW_UNIQUE),
    UOW_COLUMN(user, name, UOW_TEXT, 0),
    UOW_COLUMN(user, score, UOW_DOUBLE, 0),
    UOW_COLUMN(user, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity user_entity = UOW_ENTITY(user, "users", user_columns);

typedef struct course {
  int64_t id;
  char *title;
  int64_t seats_left;
  int64_t version;
} course;
static const uow_column course_columns[] = {
    UOW_COLUMN(course, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(course, title, UOW_TEXT, 0),
    UOW_COLUMN(course, seats_left, UOW_INT64, 0),
    UOW_COLUMN(course, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity course_entity = UOW_ENTITY(course, "courses", course_columns);

typedef struct enrollment {
  int64_t id;
  int64_t course_id;
  course *course;
  char *learner;
  int64_t enrolled_at;
} enrollment;
static const uow_column enrollment_columns[] = {
    UOW_COLUMN(enrollment, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_REFERENCE(enrollment, course_id, UOW_INT64, course, course_entity, 0),
    UOW_COLUMN(enrollment, learner, UOW_TEXT, 0),
    UOW_COLUMN(enrollment, enrolled_at, UOW_INT64, 0),
};
static const uow_entity enrollment_entity =
    UOW_ENTITY(enrollment, "enrollments", enrollment_columns);

typedef struct audit {
  int64_t id;
  char *action;
  char *detail;
  int64_t at;
} audit;
static const uow_column audit_columns[] = {
    UOW_COLUMN(audit, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(audit, action, UOW_TEXT, 0),
    UOW_COLUMN(audit, detail, UOW_TEXT, 0),
    UOW_COLUMN(audit, at, UOW_INT64, 0),
};
static const uow_entity audit_entity = UOW_ENTITY(audit, "audit_log", audit_columns);

/* W4: the same row in each store. */
typedef struct entry {
  int64_t id;
  char *account;
  double amount;
  int64_t version;
} entry;
static const uow_column entry_columns[] = {
    UOW_COLUMN(entry, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(entry, account, UOW_TEXT, 0),
    UOW_COLUMN(entry, amount, UOW_DOUBLE, 0),
    UOW_COLUMN(entry, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity local_entry_entity = UOW_ENTITY(entry, "local_entries", entry_columns);
static const uow_entity remote_entry_entity = UOW_ENTITY(entry, "remote_entries", entry_columns);

static const char *const IMPL = "libuow";

/* ---- a counting allocator: memory per tracked entity ---- */

/* Requested bytes the library holds right now (malloc's own overhead not counted). */
static size_t live_bytes;

typedef union alloc_header {
  size_t size;
  max_align_t align;
} alloc_header;

static void *counting_malloc(size_t size) {
  alloc_header *h = malloc(sizeof(*h) + size);
  if (!h)
    return NULL;
  h->size = size;
  live_bytes += size;
  return h + 1;
}

static void *counting_realloc(void *ptr, size_t size) {
  if (!ptr)
    return counting_malloc(size);
  alloc_header *h = (alloc_header *)ptr - 1;
  size_t old = h->size;
  h = realloc(h, sizeof(*h) + size);
  if (!h)
    return NULL;
  h->size = size;
  live_bytes = live_bytes - old + size;
  return h + 1;
}

static void counting_free(void *ptr) {
  if (!ptr)
    return;
  alloc_header *h = (alloc_header *)ptr - 1;
  live_bytes -= h->size;
  free(h);
}

/* ---- set-up ---- */

static void store_url(char *buf, size_t cap, const char *store, const char *where) {
  if (strcmp(store, "sqlite") == 0)
    snprintf(buf, cap, "sqlite:%s?journal_mode=wal&synchronous=full", where);
  else
    snprintf(buf, cap, "%s", where);
}

/* An environment with `entities` mapped to store "main" and their tables created. */
static int open_env(const char *url, const uow_entity *const *entities, size_t n, uow_env **env,
                    char *why, size_t cap) {
  int rc = uow_env_open(NULL, env);
  if (!rc)
    rc = uow_env_add_store(*env, "main", url);
  for (size_t i = 0; i < n && !rc; i++)
    rc = uow_env_map(*env, entities[i], "main");
  if (!rc)
    rc = uow_env_create_schema(*env);
  if (rc)
    snprintf(why, cap, "set-up: %s: %s", uow_strerror(rc),
             *env ? uow_env_errmsg(*env) : "no environment");
  return rc;
}

/* A failed unit: its message, for the result line. */
static int unit_failed(uow_unit *unit, int rc, const char *what, char *why, size_t cap) {
  snprintf(why, cap, "%s: %s: %s", what, uow_strerror(rc), unit ? uow_errmsg(unit) : "");
  return rc;
}

/* ---- W1: one unit inserts users 1..n ---- */

/* New objects per uow_send: a bulk load hands them over as it goes, so that
 * PostgreSQL inserts one batch while the program makes the next (on SQLite
 * uow_send leaves them to the commit). */
enum { SEND_EVERY = 1000 };

static int insert_users(uow_env *env, int64_t n, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  char text[64];
  for (int64_t i = 1; i <= n && !rc; i++) {
    user *u;
    if ((rc = uow_new(unit, &user_entity, (void **)&u)))
      break;
    u->id = i;
    bench_user_email(text, sizeof(text), i);
    u->email = uow_strdup(unit, text);
    bench_user_name(text, sizeof(text), i);
    u->name = uow_strdup(unit, text);
    u->score = bench_user_score(i);
    if (!u->email || !u->name)
      rc = UOW_ENOMEM;
    else if (i % SEND_EVERY == 0)
      rc = uow_send(unit);
  }
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    unit_failed(unit, rc, "insert users", why, cap);
  uow_end(unit);
  return rc;
}

static const uow_entity *const user_entities[] = {&user_entity};

static int w1(const char *url, const char *store, char *why, size_t cap) {
  bench_sizes sizes = bench_sizes_get();
  uow_env *env = NULL;
  int rc = open_env(url, user_entities, 1, &env, why, cap);
  if (!rc) {
    double t0 = bench_now();
    rc = insert_users(env, sizes.w1_rows, why, cap);
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W1", store, sizes.w1_rows, t0, t1);
  }
  uow_env_close(env);
  return rc;
}

/* ---- W2: enrollments ---- */

enum { ALREADY_ENROLLED = 1, COURSE_FULL = 2 };

typedef struct enroll_request {
  int64_t course_id;
  const char *learner;
} enroll_request;

static int enroll(uow_unit *unit, void *arg) {
  const enroll_request *req = arg;
  /* Both reads in one round trip: the course locked, then the learner's enrollment. */
  course *c;
  void **rows;
  size_t n;
  uow_value params[] = {uow_int64(req->course_id), uow_text(req->learner)};
  uow_fetch_item reads[] = {
      uow_fetch_get(&course_entity, &req->course_id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ? AND learner = ?", params, 2, 0, &rows, &n),
  };
  int rc = uow_fetch(unit, reads, 2);
  if (rc)
    return rc;
  if (n)
    return ALREADY_ENROLLED;
  if (c->seats_left == 0)
    return COURSE_FULL;
  c->seats_left--;

  int64_t now = bench_epoch_ms();
  enrollment *e;
  if ((rc = uow_new(unit, &enrollment_entity, (void **)&e)))
    return rc;
  e->course = c;
  e->learner = uow_strdup(unit, req->learner);
  e->enrolled_at = now;

  char text[256];
  audit *a;
  if ((rc = uow_new(unit, &audit_entity, (void **)&a)))
    return rc;
  a->action = BENCH_AUDIT_ACTION;
  bench_audit_detail(text, sizeof(text), req->learner, c->title);
  a->detail = uow_strdup(unit, text);
  a->at = now;
  if (!e->learner || !a->detail)
    return UOW_ENOMEM;

  int len = bench_event_payload(text, sizeof(text), c->id, req->learner);
  return uow_emit(unit, BENCH_EVENT_TOPIC, req->learner, text, (size_t)len);
}

static int create_courses(uow_env *env, const bench_sizes *sizes, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  rc = uow_exec(unit, "main", bench_sql_enrollment_index, NULL, 0);
  char title[64];
  for (int64_t c = 1; c <= sizes->w2_courses && !rc; c++) {
    course *row;
    if ((rc = uow_new(unit, &course_entity, (void **)&row)))
      break;
    row->id = c;
    bench_course_title(title, sizeof(title), c);
    row->title = uow_strdup(unit, title);
    row->seats_left = sizes->w2_seats;
  }
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    unit_failed(unit, rc, "create courses", why, cap);
  uow_end(unit);
  return rc;
}

static const uow_entity *const enrollment_entities[] = {&course_entity, &enrollment_entity,
                                                        &audit_entity};

static int w2(const char *url, const char *store, char *why, size_t cap) {
  bench_sizes sizes = bench_sizes_get();
  uow_env *env = NULL;
  int rc = open_env(url, enrollment_entities, 3, &env, why, cap);
  if (!rc)
    rc = create_courses(env, &sizes, why, cap);
  if (!rc) {
    char learner[64];
    double t0 = bench_now();
    for (int64_t k = 0; k < sizes.w2_units && !rc; k++) {
      bench_learner(learner, sizeof(learner), k);
      enroll_request req = {bench_course_of(k, sizes.w2_courses), learner};
      rc = uow_run(env, enroll, &req, NULL);
      if (rc)
        snprintf(why, cap, "enrollment %" PRId64 ": %s: %s", k,
                 rc > 0 ? "business rule refused it" : uow_strerror(rc), uow_env_errmsg(env));
    }
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W2", store, sizes.w2_units, t0, t1);
  }
  uow_env_close(env);
  return rc;
}

/* ---- W3: load every user, change every 10th, commit ---- */

static int load_modify(uow_env *env, int64_t expected, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  void **rows;
  size_t n;
  rc = uow_find(unit, &user_entity, NULL, NULL, 0, &rows, &n);
  if (!rc && (int64_t)n != expected) {
    snprintf(why, cap, "loaded %zu users, expected %" PRId64, n, expected);
    uow_end(unit);
    return UOW_EINVAL;
  }
  for (size_t i = 0; !rc && i < n; i++) {
    user *u = rows[i];
    if (u->id % BENCH_W3_EVERY == 0)
      u->score += BENCH_W3_DELTA;
  }
  if (!rc)
    rc = uow_commit(unit);
  if (rc)
    unit_failed(unit, rc, "load-modify", why, cap);
  uow_end(unit);
  return rc;
}

static int w3(const char *url, const char *store, char *why, size_t cap) {
  bench_sizes sizes = bench_sizes_get();
  uow_env *env = NULL;
  int rc = open_env(url, user_entities, 1, &env, why, cap);
  if (!rc)
    rc = insert_users(env, sizes.w3_users, why, cap);
  if (!rc) {
    double t0 = bench_now();
    rc = load_modify(env, sizes.w3_users, why, cap);
    double t1 = bench_now();
    if (!rc)
      bench_report(IMPL, "W3", store, sizes.w3_users, t0, t1);
  }
  uow_env_close(env);
  return rc;
}

/* ---- W4: one row in SQLite and one in PostgreSQL, atomically ---- */

static int w4(const char *sqlite_path, const char *pg_url, char *why, size_t cap) {
  bench_sizes sizes = bench_sizes_get();
  char url[4096];
  store_url(url, sizeof(url), "sqlite", sqlite_path);
  uow_env *env = NULL;
  int rc = uow_env_open(NULL, &env);
  if (!rc)
    rc = uow_env_add_store(env, "local", url);
  if (!rc)
    rc = uow_env_add_store(env, "remote", pg_url);
  if (!rc)
    rc = uow_env_map(env, &local_entry_entity, "local");
  if (!rc)
    rc = uow_env_map(env, &remote_entry_entity, "remote");
  if (!rc)
    rc = uow_env_create_schema(env);
  if (rc) {
    snprintf(why, cap, "set-up: %s: %s", uow_strerror(rc), env ? uow_env_errmsg(env) : "");
    uow_env_close(env);
    return rc;
  }
  char account[64];
  double t0 = bench_now();
  for (int64_t k = 0; k < sizes.w4_units && !rc; k++) {
    uow_unit *unit = NULL;
    if ((rc = uow_begin(env, &unit))) {
      snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
      break;
    }
    entry *local, *remote;
    bench_entry_account(account, sizeof(account), k);
    if (!(rc = uow_new(unit, &local_entry_entity, (void **)&local)) &&
        !(rc = uow_new(unit, &remote_entry_entity, (void **)&remote))) {
      local->id = remote->id = bench_entry_id(k);
      local->account = remote->account = account;
      local->amount = remote->amount = bench_entry_amount(k);
      rc = uow_commit(unit);
    }
    if (rc)
      unit_failed(unit, rc, "commit across stores", why, cap);
    uow_end(unit);
  }
  double t1 = bench_now();
  if (!rc)
    bench_report(IMPL, "W4", "sqlite+pg", sizes.w4_units, t0, t1);
  uow_env_close(env);
  return rc;
}

/* ---- scale: memory per tracked entity, flush and commit from 1k to 1M ---- */

typedef struct scale_point {
  int64_t n;
  double new_ms;       /* uow_new + strdup of n users */
  double insert_ms;    /* commit of the n new users */
  double bytes_new;    /* per new entity, before commit */
  double load_ms;      /* uow_find of the n users */
  double bytes_loaded; /* per loaded entity */
  double flush_ms;     /* uow_flush with nothing changed: the dirty check alone */
  double commit_ms;    /* commit with every 10th changed */
} scale_point;

static int scale_insert(uow_env *env, scale_point *p, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  size_t before = live_bytes;
  char text[64];
  double t0 = bench_now();
  for (int64_t i = 1; i <= p->n && !rc; i++) {
    user *u;
    if ((rc = uow_new(unit, &user_entity, (void **)&u)))
      break;
    u->id = i;
    bench_user_email(text, sizeof(text), i);
    u->email = uow_strdup(unit, text);
    bench_user_name(text, sizeof(text), i);
    u->name = uow_strdup(unit, text);
    u->score = bench_user_score(i);
  }
  double t1 = bench_now();
  p->bytes_new = (double)(live_bytes - before) / (double)p->n;
  if (!rc)
    rc = uow_commit(unit);
  double t2 = bench_now();
  p->new_ms = (t1 - t0) * 1000.0;
  p->insert_ms = (t2 - t1) * 1000.0;
  if (rc)
    unit_failed(unit, rc, "scale insert", why, cap);
  uow_end(unit);
  return rc;
}

/* `before`: live_bytes before the insert's unit began. The environment keeps
 * some memory of the unit that ended (UOW_UNIT_KEEP_BYTES) for the next one:
 * counted from there, the loaded entities are charged for all the memory
 * their unit holds, kept or new. */
static int scale_load(uow_env *env, scale_point *p, size_t before, char *why, size_t cap) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  if (rc) {
    snprintf(why, cap, "begin: %s", uow_env_errmsg(env));
    return rc;
  }
  void **rows;
  size_t n = 0;
  double t0 = bench_now();
  rc = uow_find(unit, &user_entity, NULL, NULL, 0, &rows, &n);
  double t1 = bench_now();
  p->bytes_loaded = (double)(live_bytes - before) / (double)p->n;
  if (!rc)
    rc = uow_flush(unit);
  double t2 = bench_now();
  for (size_t i = 0; !rc && i < n; i++) {
    user *u = rows[i];
    if (u->id % BENCH_W3_EVERY == 0)
      u->score += BENCH_W3_DELTA;
  }
  double t3 = bench_now();
  if (!rc)
    rc = uow_commit(unit);
  double t4 = bench_now();
  p->load_ms = (t1 - t0) * 1000.0;
  p->flush_ms = (t2 - t1) * 1000.0;
  p->commit_ms = (t4 - t3) * 1000.0;
  if (rc)
    unit_failed(unit, rc, "scale load", why, cap);
  uow_end(unit);
  return rc;
}

/* One line per size:
 *   scale N NEW_MS INSERT_MS BYTES_NEW LOAD_MS BYTES_LOADED FLUSH_MS COMMIT_MS */
static int scale(void) {
  static const int64_t full[] = {1000, 10000, 100000, 1000000};
  static const int64_t quick[] = {1000, 10000, 100000};
  const int64_t *sizes = bench_quick() ? quick : full;
  size_t count = bench_quick() ? 3 : 4;
  char why[1024] = "";
  int rc = UOW_OK;
  for (size_t i = 0; i < count && !rc; i++) {
    uow_env *env = NULL;
    scale_point p = {.n = sizes[i]};
    rc = open_env("sqlite::memory:", user_entities, 1, &env, why, sizeof(why));
    size_t before = live_bytes;
    if (!rc)
      rc = scale_insert(env, &p, why, sizeof(why));
    if (!rc)
      rc = scale_load(env, &p, before, why, sizeof(why));
    uow_env_close(env);
    if (!rc)
      printf("scale %" PRId64 " %.3f %.3f %.1f %.3f %.1f %.3f %.3f\n", p.n, p.new_ms, p.insert_ms,
             p.bytes_new, p.load_ms, p.bytes_loaded, p.flush_ms, p.commit_ms);
    else
      bench_na(IMPL, "scale", "sqlite", "N=%" PRId64 ": %s", sizes[i], why);
    fflush(stdout);
  }
  return 0;
}

/* ---- main ---- */

static int usage(void) {
  fprintf(stderr, "usage: bench_uow W1|W2|W3 sqlite PATH | pg URL\n"
                  "       bench_uow W4 SQLITE_PATH PG_URL\n"
                  "       bench_uow scale\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "scale") == 0) {
    /* Before any other call into the library, as uow_set_allocator requires. */
    if (uow_set_allocator(counting_malloc, counting_realloc, counting_free))
      return 1;
    return scale();
  }
  if (argc != 4)
    return usage();
  const char *workload = argv[1];
  char why[2048] = "";
  int rc;
  if (strcmp(workload, "W4") == 0) {
    if ((rc = w4(argv[2], argv[3], why, sizeof(why))))
      bench_na(IMPL, "W4", "sqlite+pg", "%s", why);
    return 0;
  }
  const char *store = argv[2];
  if (strcmp(store, "sqlite") != 0 && strcmp(store, "pg") != 0)
    return usage();
  char url[4096];
  store_url(url, sizeof(url), store, argv[3]);
  if (strcmp(workload, "W1") == 0)
    rc = w1(url, store, why, sizeof(why));
  else if (strcmp(workload, "W2") == 0)
    rc = w2(url, store, why, sizeof(why));
  else if (strcmp(workload, "W3") == 0)
    rc = w3(url, store, why, sizeof(why));
  else
    return usage();
  if (rc)
    bench_na(IMPL, workload, store, "%s", why);
  return 0;
}
