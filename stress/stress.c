/*
 * stress.c - many processes run enrollment units against one store for a
 * while, a relay delivers their events from another process at the same
 * time, and then every figure is checked.
 *
 * Each unit is the enrollment of examples/enrollment: lock the course
 * (uow_get_ex with UOW_FOR_UPDATE), check the learner is not enrolled, take a
 * seat (the course's version is checked), insert the enrollment and an audit
 * row, and emit `enrollment.created` keyed by the course; uow_run retries
 * conflicts. Workers spread over a small window of the courses that still
 * have seats, so that they collide on the same rows all the time and each
 * course fills up and starts turning learners away (full) while learners
 * drawn twice are refused (duplicate).
 *
 * The relay (uow_relay_run with a C sink) appends every event it is handed to
 * a file, one line each. When the workers have stopped it drains the backlog
 * and stops. The checks then read the store: never oversold, seats taken ==
 * enrollments == audit rows == committed answers == events, every event in
 * the outbox delivered at least once (duplicates are counted), none
 * delivered that is not there, none pending or dead, order per key kept.
 *
 *   stress --store URL --work DIR [--procs N] [--seconds N] [--courses N]
 *          [--seats N] [--learners N] [--label NAME]
 *
 * Exit status: 0 when every check holds, 1 when one fails, 2 on bad usage.
 * stress/run.sh starts the stores and runs it; `make stress` runs that.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uow.h"

/* ---- the model: the enrollment example's tables, under names of our own ---- */

typedef struct course {
  int64_t id;
  char *title;
  int64_t seats;
  int64_t seats_left;
  int64_t version;
} course;
static const uow_column course_columns[] = {
    UOW_COLUMN(course, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(course, title, UOW_TEXT, UOW_UNIQUE),
    UOW_COLUMN(course, seats, UOW_INT64, 0),
    UOW_COLUMN(course, seats_left, UOW_INT64, 0),
    UOW_COLUMN(course, version, UOW_INT64, UOW_VERSION),
};
static const uow_entity course_entity = UOW_ENTITY(course, "stress_courses", course_columns);

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
    UOW_ENTITY(enrollment, "stress_enrollments", enrollment_columns);

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
static const uow_entity audit_entity = UOW_ENTITY(audit, "stress_audit", audit_columns);

/* ---- read-only entities over views and the outbox, for the checks ---- */

/* One row per course whose figures disagree (the view stress_bad_courses). */
typedef struct course_check {
  int64_t id;
  int64_t seats;
  int64_t seats_left;
  int64_t enrolled;
  int64_t learners;
} course_check;
static const uow_column course_check_columns[] = {
    UOW_COLUMN(course_check, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(course_check, seats, UOW_INT64, 0),
    UOW_COLUMN(course_check, seats_left, UOW_INT64, 0),
    UOW_COLUMN(course_check, enrolled, UOW_INT64, 0),
    UOW_COLUMN(course_check, learners, UOW_INT64, 0),
};
static const uow_entity course_check_entity =
    UOW_ENTITY(course_check, "stress_course_check", course_check_columns);

/* The store's totals, one row (the view stress_totals). */
typedef struct totals {
  int64_t id;
  int64_t courses;
  int64_t full_courses;
  int64_t min_seats_left;
  int64_t taken;
  int64_t enrollments;
  int64_t audits;
  int64_t events;
  int64_t outbox_rows;
  int64_t pending;
  int64_t dead;
} totals;
static const uow_column totals_columns[] = {
    UOW_COLUMN(totals, id, UOW_INT64, UOW_PRIMARY_KEY),
    UOW_COLUMN(totals, courses, UOW_INT64, 0),
    UOW_COLUMN(totals, full_courses, UOW_INT64, 0),
    UOW_COLUMN(totals, min_seats_left, UOW_INT64, 0),
    UOW_COLUMN(totals, taken, UOW_INT64, 0),
    UOW_COLUMN(totals, enrollments, UOW_INT64, 0),
    UOW_COLUMN(totals, audits, UOW_INT64, 0),
    UOW_COLUMN(totals, events, UOW_INT64, 0),
    UOW_COLUMN(totals, outbox_rows, UOW_INT64, 0),
    UOW_COLUMN(totals, pending, UOW_INT64, 0),
    UOW_COLUMN(totals, dead, UOW_INT64, 0),
};
static const uow_entity totals_entity = UOW_ENTITY(totals, "stress_totals", totals_columns);

/* The library's outbox is an ordinary table: the ids of its events. */
typedef struct outbox_event {
  int64_t id;
  char *event_key;
} outbox_event;
static const uow_column outbox_event_columns[] = {
    UOW_COLUMN(outbox_event, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(outbox_event, event_key, UOW_TEXT, UOW_NULLABLE),
};
static const uow_entity outbox_event_entity =
    UOW_ENTITY(outbox_event, "uow_outbox", outbox_event_columns);

/* Set up once by the parent: a fresh schema, an index for the duplicate
 * check, the views the checks read, and the courses. */
static const char *const drop_sql[] = {
    "DROP VIEW IF EXISTS stress_totals",       "DROP VIEW IF EXISTS stress_course_check",
    "DROP TABLE IF EXISTS stress_enrollments", "DROP TABLE IF EXISTS stress_audit",
    "DROP TABLE IF EXISTS stress_courses",
};
static const char *const setup_sql[] = {
    "DELETE FROM uow_outbox",
    "DELETE FROM uow_relay_lease",
    /* Not unique on purpose: a seat sold twice to one learner must show up in
     * the checks, not be hidden as a constraint failure. */
    "CREATE INDEX stress_enrollments_course ON stress_enrollments (course_id, learner)",
    "CREATE VIEW stress_course_check AS SELECT c.id AS id, c.seats AS seats, "
    "c.seats_left AS seats_left, "
    "CAST((SELECT count(*) FROM stress_enrollments e WHERE e.course_id = c.id) AS BIGINT) "
    "AS enrolled, "
    "CAST((SELECT count(DISTINCT e.learner) FROM stress_enrollments e WHERE e.course_id = c.id) "
    "AS BIGINT) AS learners FROM stress_courses c",
    "CREATE VIEW stress_totals AS SELECT 1 AS id, "
    "CAST((SELECT count(*) FROM stress_courses) AS BIGINT) AS courses, "
    "CAST((SELECT count(*) FROM stress_courses WHERE seats_left = 0) AS BIGINT) AS full_courses, "
    "CAST((SELECT coalesce(min(seats_left), 0) FROM stress_courses) AS BIGINT) AS "
    "min_seats_left, "
    "CAST((SELECT coalesce(sum(seats - seats_left), 0) FROM stress_courses) AS BIGINT) AS taken, "
    "CAST((SELECT count(*) FROM stress_enrollments) AS BIGINT) AS enrollments, "
    "CAST((SELECT count(*) FROM stress_audit WHERE action = 'enroll') AS BIGINT) AS audits, "
    "CAST((SELECT count(*) FROM uow_outbox WHERE kind = 'event' AND topic = "
    "'enrollment.created') AS BIGINT) AS events, "
    "CAST((SELECT count(*) FROM uow_outbox) AS BIGINT) AS outbox_rows, "
    "CAST((SELECT count(*) FROM uow_outbox WHERE state = 0) AS BIGINT) AS pending, "
    "CAST((SELECT count(*) FROM uow_outbox WHERE state = 2) AS BIGINT) AS dead",
};

/* ---- configuration and small helpers ---- */

typedef struct config {
  const char *url;
  const char *work;
  const char *label;
  int procs;
  int seconds;
  int courses;
  int seats;
  int learners; /* learner names drawn per course: more than seats, so courses fill */
  int window;   /* courses with seats left that the workers spread over */
} config;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_random(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int open_env(const char *url, uow_env **env) {
  *env = NULL;
  int rc = uow_env_open(NULL, env);
  if (rc == UOW_OK && (rc = uow_env_add_store(*env, "main", url)) == UOW_OK &&
      (rc = uow_env_map(*env, &course_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(*env, &enrollment_entity, "main")) == UOW_OK)
    rc = uow_env_map(*env, &audit_entity, "main");
  if (rc) {
    fprintf(stderr, "stress: open: %s\n", *env ? uow_env_errmsg(*env) : uow_strerror(rc));
    uow_env_close(*env);
    *env = NULL;
  }
  return rc;
}

/* Run statements in one unit. */
static int exec_all(uow_env *env, const char *const *sql, size_t n, const char *extra) {
  uow_unit *unit = NULL;
  int rc = uow_begin(env, &unit);
  for (size_t i = 0; i < n && rc == UOW_OK; i++)
    rc = uow_exec(unit, "main", sql[i], NULL, 0);
  if (rc == UOW_OK && extra)
    rc = uow_exec(unit, "main", extra, NULL, 0);
  if (rc == UOW_OK)
    rc = uow_commit(unit);
  if (rc)
    fprintf(stderr, "stress: setup: %s\n", unit ? uow_errmsg(unit) : uow_env_errmsg(env));
  uow_end(unit);
  return rc;
}

static int setup(const config *cfg) {
  uow_env *env;
  if (open_env(cfg->url, &env))
    return 1;
  char insert[512];
  /* Explicit ids 1..N, so that workers can pick a course by number. */
  snprintf(insert, sizeof(insert),
           "INSERT INTO stress_courses (id, title, seats, seats_left, version) "
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
           "SELECT i, 'course-' || i, %d, %d, 1 FROM n",
           cfg->courses, cfg->seats, cfg->seats);
  int rc = exec_all(env, drop_sql, sizeof(drop_sql) / sizeof(drop_sql[0]), NULL);
  if (rc == UOW_OK && (rc = uow_env_create_schema(env)) != UOW_OK)
    fprintf(stderr, "stress: schema: %s\n", uow_env_errmsg(env));
  if (rc == UOW_OK)
    rc = exec_all(env, setup_sql, sizeof(setup_sql) / sizeof(setup_sql[0]), insert);
  uow_env_close(env);
  return rc ? 1 : 0;
}

/* ---- the unit: one enrollment ---- */

/* Business answers, returned by the body (positive, so uow_run hands them back). */
enum { ALREADY_ENROLLED = 1, COURSE_FULL = 2, NO_SUCH_COURSE = 3 };

typedef struct enroll_request {
  int64_t course_id;
  const char *learner;
  uint64_t *bodies; /* counts every run of the body, retries included */
} enroll_request;

static int enroll(uow_unit *unit, void *arg) {
  const enroll_request *req = arg;
  (*req->bodies)++;
  course *c;
  int rc = uow_get_ex(unit, &course_entity, &req->course_id, UOW_FOR_UPDATE, (void **)&c);
  if (rc == UOW_ENOTFOUND)
    return NO_SUCH_COURSE;
  if (rc)
    return rc;
  uow_value params[] = {uow_int64(c->id), uow_text(req->learner)};
  void **rows;
  size_t n = 0;
  if ((rc = uow_find(unit, &enrollment_entity, "course_id = ? AND learner = ?", params, 2, &rows,
                     &n)))
    return rc;
  if (n > 0)
    return ALREADY_ENROLLED;
  if (c->seats_left <= 0)
    return COURSE_FULL;
  c->seats_left--;

  enrollment *e;
  if ((rc = uow_new(unit, &enrollment_entity, (void **)&e)))
    return rc;
  e->course = c;
  e->learner = uow_strdup(unit, req->learner);
  e->enrolled_at = (int64_t)time(NULL);
  if (!e->learner)
    return UOW_ENOMEM;

  audit *a;
  char text[160];
  if ((rc = uow_new(unit, &audit_entity, (void **)&a)))
    return rc;
  snprintf(text, sizeof(text), "%s took a seat in %s", req->learner, c->title);
  a->action = "enroll";
  a->detail = uow_strdup(unit, text);
  a->at = e->enrolled_at;
  if (!a->detail)
    return UOW_ENOMEM;

  char key[32];
  snprintf(key, sizeof(key), "course-%" PRId64, c->id);
  int len = snprintf(text, sizeof(text), "{\"course\":%" PRId64 ",\"learner\":\"%s\"}", c->id,
                     req->learner);
  return uow_emit(unit, "enrollment.created", key, text, (size_t)len);
}

/* ---- a worker process ---- */

enum { NCODES = 9 }; /* UOW_OK .. UOW_EINDOUBT, by -code */

typedef struct counts {
  int worker;
  uint64_t attempted, committed, full, duplicate, gave_up, failed, bodies;
  uint64_t by_code[NCODES]; /* failures (gave_up included) by -code; [0]: other answers */
  int exhausted;            /* ran out of courses with seats */
} counts;

/* Pick a course among the first `window` that this worker has not seen full. */
static int64_t pick_course(const config *cfg, unsigned char *full, int *low, uint64_t *rng,
                           int *exhausted) {
  while (*low <= cfg->courses && full[*low])
    (*low)++;
  int64_t candidates[256];
  int n = 0;
  for (int id = *low; id <= cfg->courses && n < cfg->window; id++)
    if (!full[id])
      candidates[n++] = id;
  if (n == 0) {
    *exhausted = 1;
    return 1 + (int64_t)(next_random(rng) % (uint64_t)cfg->courses);
  }
  return candidates[next_random(rng) % (uint64_t)n];
}

static int worker(const config *cfg, int index, int start_fd, int result_fd) {
  counts c;
  memset(&c, 0, sizeof(c));
  c.worker = index;
  unsigned char *full = calloc((size_t)cfg->courses + 2, 1);
  uow_env *env = NULL;
  int status = 1;
  if (!full || open_env(cfg->url, &env))
    goto done;
  char go;
  if (read(start_fd, &go, 1) < 0) /* the starting gun: EOF when the parent closes it */
    goto done;
  uint64_t rng =
      ((uint64_t)index * 0x2545f4914f6cdd1dULL) ^ (uint64_t)getpid() ^ ((uint64_t)now_ms() << 20);
  int low = 1, reported = 0;
  int64_t deadline = now_ms() + (int64_t)cfg->seconds * 1000;
  while (now_ms() < deadline) {
    char learner[32];
    enroll_request req = {pick_course(cfg, full, &low, &rng, &c.exhausted), learner, &c.bodies};
    snprintf(learner, sizeof(learner), "learner-%u",
             (unsigned)(next_random(&rng) % (uint64_t)cfg->learners));
    c.attempted++;
    int rc = uow_run(env, enroll, &req, NULL);
    if (rc == UOW_OK) {
      c.committed++;
    } else if (rc == COURSE_FULL) {
      c.full++;
      full[req.course_id] = 1;
    } else if (rc == ALREADY_ENROLLED) {
      c.duplicate++;
    } else {
      if (rc == UOW_ECONFLICT)
        c.gave_up++;
      else
        c.failed++;
      c.by_code[rc < 0 && -rc < NCODES ? -rc : 0]++;
      if (reported++ < 5)
        fprintf(stderr, "stress: worker %d: course %" PRId64 ": %s: %s\n", index, req.course_id,
                rc < 0 ? uow_strerror(rc) : "no such course", uow_env_errmsg(env));
    }
  }
  status = write(result_fd, &c, sizeof(c)) == (ssize_t)sizeof(c) ? 0 : 1;
done:
  uow_env_close(env);
  free(full);
  return status;
}

/* ---- the relay process ---- */

typedef struct relay_summary {
  uow_relay_stats stats;
  int64_t backlog_at_drain; /* events pending when the workers had stopped */
  int64_t drain_ms;         /* from then until the backlog was empty */
  int timed_out;            /* the backlog did not empty in time */
  int sink_errors;
  int rc;
} relay_summary;

typedef struct relay_state {
  FILE *log;
  int drain_fd;
  int draining; /* 1: asked to drain; 2: a pass has started since */
  int64_t drain_started;
  int64_t drain_timeout_ms;
  relay_summary summary;
} relay_state;

/* The sink: one line per event handed over, `id attempt key`. */
static int record_events(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                         char *err, size_t errcap) {
  relay_state *st = ctx;
  for (size_t i = 0; i < n; i++)
    fprintf(st->log, "%" PRId64 " %" PRId64 " %s\n", events[i].id, events[i].attempt,
            events[i].key ? events[i].key : "-");
  /* Flushed before the relay marks them, as a real consumer would commit first. */
  if (fflush(st->log) != 0 || ferror(st->log)) {
    st->summary.sink_errors++;
    snprintf(err, errcap, "cannot write the delivery log: %s", strerror(errno));
    *delivered = 0;
    return UOW_EIO;
  }
  *delivered = n;
  return UOW_OK;
}

static int relay_progress(void *arg, const uow_relay_stats *stats) {
  relay_state *st = arg;
  st->summary.stats = *stats;
  if (st->draining == 0) {
    struct pollfd p = {st->drain_fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0) { /* the parent closed the pipe: every worker has stopped */
      st->draining = 1;
      st->drain_started = now_ms();
      st->summary.backlog_at_drain = stats->backlog;
    }
    return 0;
  }
  if (st->draining == 1) { /* this pass may have begun before the last commit: one more */
    st->draining = 2;
    return 0;
  }
  st->summary.drain_ms = now_ms() - st->drain_started;
  if (stats->backlog == 0)
    return 1;
  if (st->summary.drain_ms > st->drain_timeout_ms) {
    st->summary.timed_out = 1;
    return 1;
  }
  return 0;
}

static int relay(const config *cfg, int drain_fd, int result_fd) {
  relay_state st;
  memset(&st, 0, sizeof(st));
  st.drain_fd = drain_fd;
  st.drain_timeout_ms = 300000;
  char path[4096];
  snprintf(path, sizeof(path), "%s/delivered-%s.log", cfg->work, cfg->label);
  uow_env *env = NULL;
  st.log = fopen(path, "w");
  if (!st.log) {
    perror(path);
    return 1;
  }
  int rc = UOW_EIO;
  if (open_env(cfg->url, &env) == UOW_OK) {
    uow_sink sink = {UOW_SINK_VERSION, "stress-recorder", record_events, NULL, &st};
    uow_relay_options opts = UOW_RELAY_OPTIONS_INIT;
    opts.batch = 500;
    opts.poll_ms = 50;
    opts.retention_ms = -1; /* keep delivered rows: the checks compare them */
    rc = uow_relay_run(env, &sink, &opts, NULL, relay_progress, &st);
    if (rc)
      fprintf(stderr, "stress: relay: %s\n", uow_env_errmsg(env));
  }
  uow_env_close(env);
  st.summary.rc = rc;
  int status = fclose(st.log) == 0 && rc == UOW_OK ? 0 : 1;
  if (write(result_fd, &st.summary, sizeof(st.summary)) != (ssize_t)sizeof(st.summary))
    status = 1;
  return status;
}

/* ---- the checks ---- */

typedef struct check {
  const char *label;
  int failures;
} check;

static void expect(check *ck, bool ok, const char *what) {
  if (!ok) {
    printf("  FAILED: %s\n", what);
    ck->failures++;
  }
}

static int compare_ids(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

typedef struct delivery_report {
  uint64_t lines, distinct, duplicates, unknown, missing, out_of_order, redelivered;
} delivery_report;

/* Compare the relay's log with the outbox: every id there at least once, none
 * that is not, and each key's first deliveries in id order (commit order, as
 * the course lock serialises the units of one course). */
static int check_deliveries(const config *cfg, const int64_t *ids, size_t nids,
                            delivery_report *r) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/delivered-%s.log", cfg->work, cfg->label);
  FILE *f = fopen(path, "r");
  unsigned char *seen = calloc(nids + 1, 1);
  int64_t *last = calloc((size_t)cfg->courses + 2, sizeof(int64_t));
  int64_t *unknown = NULL;
  size_t nunknown = 0, capunknown = 0;
  int status = 1;
  if (!f || !seen || !last) {
    if (!f)
      perror(path);
    goto done;
  }
  char line[256];
  while (fgets(line, sizeof(line), f)) {
    int64_t id, attempt, course_id = 0;
    char key[128];
    if (sscanf(line, "%" SCNd64 " %" SCNd64 " %127s", &id, &attempt, key) != 3) {
      fprintf(stderr, "stress: %s: bad line: %s", path, line);
      goto done;
    }
    r->lines++;
    if (attempt > 1)
      r->redelivered++;
    const int64_t *at = bsearch(&id, ids, nids, sizeof(*ids), compare_ids);
    if (!at) {
      if (nunknown == capunknown) {
        capunknown = capunknown ? capunknown * 2 : 64;
        int64_t *grown = realloc(unknown, capunknown * sizeof(*unknown));
        if (!grown)
          goto done;
        unknown = grown;
      }
      unknown[nunknown++] = id;
      continue;
    }
    size_t i = (size_t)(at - ids);
    if (seen[i]) {
      r->duplicates++;
      continue;
    }
    seen[i] = 1;
    r->distinct++;
    if (sscanf(key, "course-%" SCNd64, &course_id) == 1 && course_id >= 1 &&
        course_id <= cfg->courses) {
      if (last[course_id] > id)
        r->out_of_order++;
      last[course_id] = id;
    } else {
      r->out_of_order++; /* not a key this program writes */
    }
  }
  for (size_t i = 0; i < nids; i++)
    r->missing += !seen[i];
  if (nunknown) {
    qsort(unknown, nunknown, sizeof(*unknown), compare_ids);
    for (size_t i = 0; i < nunknown; i++)
      if (i == 0 || unknown[i] != unknown[i - 1])
        r->unknown++;
    r->distinct += r->unknown;
    r->duplicates += nunknown - r->unknown;
  }
  status = 0;
done:
  if (f)
    fclose(f);
  free(seen);
  free(last);
  free(unknown);
  return status;
}

/* The outbox's event ids, sorted. */
static int load_outbox_ids(uow_unit *unit, int64_t **ids, size_t *n) {
  void **rows;
  size_t count;
  *ids = NULL;
  *n = 0;
  int rc =
      uow_find(unit, &outbox_event_entity, "kind = 'event' ORDER BY id", NULL, 0, &rows, &count);
  if (rc)
    return rc;
  *ids = malloc((count ? count : 1) * sizeof(**ids));
  if (!*ids)
    return UOW_ENOMEM;
  for (size_t i = 0; i < count; i++)
    (*ids)[i] = ((outbox_event *)rows[i])->id;
  qsort(*ids, count, sizeof(**ids), compare_ids);
  *n = count;
  return UOW_OK;
}

static int verify(const config *cfg, const counts *total, const relay_summary *rs,
                  bool children_ok) {
  check ck = {cfg->label, 0};
  uow_env *env = NULL;
  uow_unit *unit = NULL;
  int64_t *ids = NULL;
  size_t nids = 0, nbad = 0;
  void **rows;
  size_t count = 0;
  totals *t = NULL;
  int rc = uow_env_open(NULL, &env);
  if (rc == UOW_OK && (rc = uow_env_add_store(env, "main", cfg->url)) == UOW_OK &&
      (rc = uow_env_map(env, &course_check_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(env, &totals_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(env, &outbox_event_entity, "main")) == UOW_OK)
    rc = uow_begin(env, &unit);
  if (rc == UOW_OK &&
      (rc = uow_find(unit, &totals_entity, NULL, NULL, 0, &rows, &count)) == UOW_OK && count == 1)
    t = rows[0];
  if (rc == UOW_OK && !t)
    rc = UOW_ENOTFOUND;
  if (rc == UOW_OK)
    rc = uow_find(unit, &course_check_entity,
                  "seats_left < 0 OR seats_left > seats OR seats - seats_left <> enrolled OR "
                  "learners <> enrolled ORDER BY id",
                  NULL, 0, &rows, &nbad);
  if (rc == UOW_OK)
    for (size_t i = 0; i < nbad && i < 5; i++) {
      const course_check *b = rows[i];
      printf("  course %" PRId64 ": seats %" PRId64 ", left %" PRId64 ", enrollments %" PRId64
             ", distinct learners %" PRId64 "\n",
             b->id, b->seats, b->seats_left, b->enrolled, b->learners);
    }
  if (rc == UOW_OK)
    rc = load_outbox_ids(unit, &ids, &nids);
  if (rc) {
    fprintf(stderr, "stress: checks: %s: %s\n", uow_strerror(rc),
            unit  ? uow_errmsg(unit)
            : env ? uow_env_errmsg(env)
                  : "");
    uow_end(unit);
    uow_env_close(env);
    free(ids);
    printf("  FAILED: could not read the store\n");
    return 1;
  }
  delivery_report d;
  memset(&d, 0, sizeof(d));
  int log_ok = check_deliveries(cfg, ids, nids, &d);

  uint64_t rejected = total->full + total->duplicate;
  printf("  units: attempted %" PRIu64 ", committed %" PRIu64 ", rejected %" PRIu64
         " (full %" PRIu64 ", duplicate %" PRIu64 "), failed %" PRIu64 " (conflict retries "
         "exhausted %" PRIu64 ", other errors %" PRIu64 "); bodies run %" PRIu64 " (%" PRIu64
         " conflict retries)\n",
         total->attempted, total->committed, rejected, total->full, total->duplicate,
         total->gave_up + total->failed, total->gave_up, total->failed, total->bodies,
         total->bodies - total->attempted);
  for (int code = 1; code < NCODES; code++)
    if (total->by_code[code] && code != -UOW_ECONFLICT)
      printf("    %s: %" PRIu64 "\n", uow_strerror(-code), total->by_code[code]);
  printf("  seats: %" PRId64 " courses (%" PRId64 " full), seats taken %" PRId64
         ", enrollments %" PRId64 ", audit rows %" PRId64 ", committed answers %" PRIu64
         ", min seats_left %" PRId64 ", courses that disagree %zu\n",
         t->courses, t->full_courses, t->taken, t->enrollments, t->audits, total->committed,
         t->min_seats_left, nbad);
  printf("  events: outbox rows %" PRId64 " (enrollment.created %" PRId64 "), delivered %" PRIu64
         " (distinct %" PRIu64 ", duplicates %" PRIu64 ", redelivered attempts %" PRIu64
         "), missing %" PRIu64 ", unknown %" PRIu64 ", out of order %" PRIu64 ", pending %" PRId64
         ", dead %" PRId64 "\n",
         t->outbox_rows, t->events, d.lines, d.distinct, d.duplicates, d.redelivered, d.missing,
         d.unknown, d.out_of_order, t->pending, t->dead);
  printf("  relay: %" PRIu64 " passes, %" PRIu64 " delivered, %" PRIu64 " retried, %" PRIu64
         " dead; backlog when the workers stopped %" PRId64 ", drained in %.1f s\n",
         rs->stats.passes, rs->stats.delivered, rs->stats.retried, rs->stats.dead,
         rs->backlog_at_drain, (double)rs->drain_ms / 1000.0);
  if (total->exhausted)
    printf("  note: the workers ran out of courses with seats (raise --courses)\n");

  expect(&ck, children_ok, "every worker and the relay exited normally");
  expect(&ck, total->failed == 0, "no unit failed with an error other than a conflict");
  expect(&ck, total->attempted == total->committed + rejected + total->gave_up + total->failed,
         "attempted == committed + rejected + failed");
  expect(&ck, total->committed > 0, "some units committed");
  expect(&ck, t->min_seats_left >= 0 && nbad == 0,
         "never oversold: per course 0 <= seats_left, seats taken == its enrollments, one "
         "per learner");
  expect(&ck, t->taken == t->enrollments, "seats taken == enrollments");
  expect(&ck, (uint64_t)t->enrollments == total->committed,
         "enrollments == committed enrollment answers");
  expect(&ck, t->audits == t->enrollments, "audit rows == enrollments");
  expect(&ck, t->events == t->enrollments && t->outbox_rows == t->events,
         "one enrollment.created event per enrollment, nothing else in the outbox");
  expect(&ck, log_ok == 0, "the delivery log was read");
  expect(&ck, d.distinct == (uint64_t)nids && d.missing == 0,
         "every committed event delivered at least once (distinct delivered == outbox rows)");
  expect(&ck, d.unknown == 0, "no event delivered that the outbox does not hold");
  expect(&ck, d.out_of_order == 0, "events delivered in commit order per course");
  expect(&ck, t->pending == 0 && t->dead == 0, "nothing pending or dead after the drain");
  expect(&ck, !rs->timed_out && rs->rc == 0 && rs->sink_errors == 0,
         "the relay drained the backlog and stopped cleanly");
  expect(&ck, rs->stats.delivered == d.lines, "the relay's count == lines in its log");

  uow_end(unit);
  uow_env_close(env);
  free(ids);
  printf("stress %s: %s\n", cfg->label,
         ck.failures ? "FAILED (see above)" : "every invariant holds");
  return ck.failures ? 1 : 0;
}

/* ---- the run ---- */

static void usage(FILE *to) {
  fprintf(to, "usage: stress --store URL --work DIR [--procs N] [--seconds N] [--courses N]\n"
              "              [--seats N] [--learners N] [--label NAME]\n"
              "  --store URL     sqlite:PATH or postgresql://... (tables are recreated)\n"
              "  --work DIR      where the relay writes its delivery log\n"
              "  --procs N       worker processes (default 8)\n"
              "  --seconds N     how long the workers run (default 60)\n"
              "  --courses N     courses created (default 1000 per second of run, >= 2000)\n"
              "  --seats N       seats per course (default 8)\n"
              "  --learners N    learner names drawn per course (default 12)\n"
              "  --label NAME    name in the report and the log file (default store)\n");
}

static bool parse_int(const char *s, int min, int max, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return false;
  *out = (int)v;
  return true;
}

static int parse_args(int argc, char **argv, config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->label = "store";
  cfg->procs = 8;
  cfg->seconds = 60;
  cfg->seats = 8;
  cfg->learners = 12;
  for (int i = 1; i < argc; i += 2) { /* every option but --help takes a value */
    const char *opt = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = value != NULL;
    if (strcmp(opt, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (ok && strcmp(opt, "--store") == 0) {
      cfg->url = value;
    } else if (ok && strcmp(opt, "--work") == 0) {
      cfg->work = value;
    } else if (ok && strcmp(opt, "--label") == 0) {
      cfg->label = value;
    } else if (ok && strcmp(opt, "--procs") == 0) {
      ok = parse_int(value, 1, 64, &cfg->procs);
    } else if (ok && strcmp(opt, "--seconds") == 0) {
      ok = parse_int(value, 1, 86400, &cfg->seconds);
    } else if (ok && strcmp(opt, "--courses") == 0) {
      ok = parse_int(value, 1, 10000000, &cfg->courses);
    } else if (ok && strcmp(opt, "--seats") == 0) {
      ok = parse_int(value, 1, 1000000, &cfg->seats);
    } else if (ok && strcmp(opt, "--learners") == 0) {
      ok = parse_int(value, 1, 1000000, &cfg->learners);
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "stress: bad option %s%s%s\n", opt, value ? " " : "", value ? value : "");
      usage(stderr);
      return 2;
    }
  }
  if (!cfg->url || !cfg->work) {
    usage(stderr);
    return 2;
  }
  if (!cfg->courses)
    cfg->courses = cfg->seconds * 1000 < 2000 ? 2000 : cfg->seconds * 1000;
  cfg->window = 2 * cfg->procs < 256 ? 2 * cfg->procs : 256;
  return -1;
}

int main(int argc, char **argv) {
  config cfg;
  int rc = parse_args(argc, argv, &cfg);
  if (rc >= 0)
    return rc;
  printf("stress %s: %d worker processes x %d s, %d courses of %d seats, %d learner names per "
         "course; a relay in its own process\n",
         cfg.label, cfg.procs, cfg.seconds, cfg.courses, cfg.seats, cfg.learners);
  fflush(stdout);
  if (setup(&cfg))
    return 1;

  /* Connections never cross a fork: every child opens its own environment. */
  int results[2], start[2], drain[2], relay_out[2];
  if (pipe(results) || pipe(start) || pipe(drain) || pipe(relay_out)) {
    perror("pipe");
    return 1;
  }
  pid_t relay_pid = fork();
  if (relay_pid < 0) {
    perror("fork");
    return 1;
  }
  if (relay_pid == 0) {
    close(drain[1]);
    close(relay_out[0]);
    close(start[0]);
    close(start[1]);
    close(results[0]);
    close(results[1]);
    exit(relay(&cfg, drain[0], relay_out[1])); /* exit, not _exit: LeakSanitizer runs at exit */
  }
  close(drain[0]);
  close(relay_out[1]);
  pid_t pids[64];
  for (int p = 0; p < cfg.procs; p++) {
    pids[p] = fork();
    if (pids[p] < 0) {
      perror("fork");
      return 1;
    }
    if (pids[p] == 0) {
      close(results[0]);
      close(start[1]);
      close(drain[1]);
      close(relay_out[0]);
      exit(worker(&cfg, p + 1, start[0], results[1]));
    }
  }
  close(results[1]);
  close(start[0]);
  close(start[1]); /* the starting gun */

  bool children_ok = true;
  counts total;
  memset(&total, 0, sizeof(total));
  for (int p = 0; p < cfg.procs; p++) {
    int status = 0;
    if (waitpid(pids[p], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "stress: worker %d did not exit cleanly (status %#x)\n", p + 1, status);
      children_ok = false;
    }
  }
  counts c;
  int got = 0;
  while (read(results[0], &c, sizeof(c)) == (ssize_t)sizeof(c)) {
    got++;
    total.attempted += c.attempted;
    total.committed += c.committed;
    total.full += c.full;
    total.duplicate += c.duplicate;
    total.gave_up += c.gave_up;
    total.failed += c.failed;
    total.bodies += c.bodies;
    total.exhausted |= c.exhausted;
    for (int i = 0; i < NCODES; i++)
      total.by_code[i] += c.by_code[i];
  }
  close(results[0]);
  if (got != cfg.procs) {
    fprintf(stderr, "stress: %d of %d workers reported\n", got, cfg.procs);
    children_ok = false;
  }

  close(drain[1]); /* every worker has stopped: the relay drains the backlog and stops */
  relay_summary rs;
  memset(&rs, 0, sizeof(rs));
  rs.rc = UOW_EIO;
  if (read(relay_out[0], &rs, sizeof(rs)) != (ssize_t)sizeof(rs)) {
    fprintf(stderr, "stress: the relay did not report\n");
    children_ok = false;
  }
  close(relay_out[0]);
  int status = 0;
  if (waitpid(relay_pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "stress: the relay did not exit cleanly (status %#x)\n", status);
    children_ok = false;
  }
  return verify(&cfg, &total, &rs, children_ok);
}
