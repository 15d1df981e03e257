/*
 * enrollment - learners enroll into courses that have a limited number of
 * seats. Each enrollment is one unit of work: lock the course, check the
 * learner is not enrolled yet and a seat is left, take the seat, record the
 * enrollment and an audit row, and emit an `enrollment.created` event. Either
 * all of it is stored or none of it.
 *
 * The demo shows a normal enrollment, a duplicate rejected, a full course
 * rejected, then several processes enrolling into one course at once without
 * ever selling more seats than it has.
 *
 *   enrollment [--db PATH | --store URL] [--processes N] [--seats N] [--learners N]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uow.h"

/* ---- the model ---- */

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
static const uow_entity course_entity = UOW_ENTITY(course, "demo_courses", course_columns);

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
    UOW_ENTITY(enrollment, "demo_enrollments", enrollment_columns);

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
static const uow_entity audit_entity = UOW_ENTITY(audit, "demo_audit_log", audit_columns);

/* Outcomes of an enrollment that are business answers, not failures of the library. */
enum { ALREADY_ENROLLED = 1, COURSE_FULL = 2, NO_SUCH_COURSE = 3 };

static const char *outcome_text(int rc) {
  switch (rc) {
  case 0:
    return "enrolled";
  case ALREADY_ENROLLED:
    return "rejected: already enrolled";
  case COURSE_FULL:
    return "rejected: the course is full";
  case NO_SUCH_COURSE:
    return "rejected: no such course";
  default:
    return uow_strerror(rc);
  }
}

static int64_t now_seconds(void) { return (int64_t)time(NULL); }

/* ---- the repository: small functions over the unit ---- */

typedef struct outbox_event {
  int64_t id;
  char *topic;
} outbox_event;
static const uow_column outbox_event_columns[] = {
    UOW_COLUMN(outbox_event, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(outbox_event, topic, UOW_TEXT, 0),
};
/* The library's outbox is an ordinary table: a read-only view of it for the report. */
static const uow_entity outbox_event_entity =
    UOW_ENTITY(outbox_event, "uow_outbox", outbox_event_columns);

static int open_env(const char *url, uow_env **env) {
  int rc = uow_env_open(NULL, env);
  if (rc == UOW_OK && (rc = uow_env_add_store(*env, "main", url)) == UOW_OK &&
      (rc = uow_env_map(*env, &course_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(*env, &enrollment_entity, "main")) == UOW_OK &&
      (rc = uow_env_map(*env, &audit_entity, "main")) == UOW_OK)
    rc = uow_env_map(*env, &outbox_event_entity, "main");
  if (rc)
    fprintf(stderr, "enrollment: %s\n", *env ? uow_env_errmsg(*env) : uow_strerror(rc));
  return rc;
}

static int record_audit(uow_unit *unit, const char *action, const char *detail) {
  audit *a;
  int rc = uow_new(unit, &audit_entity, (void **)&a);
  if (rc)
    return rc;
  a->action = (char *)action;
  a->detail = uow_strdup(unit, detail);
  a->at = now_seconds();
  return a->detail ? UOW_OK : UOW_ENOMEM;
}

typedef struct enroll_request {
  int64_t course_id;
  const char *learner;
} enroll_request;

/* The business operation: one unit of work (run by uow_run, which retries conflicts). */
static int enroll(uow_unit *unit, void *arg) {
  const enroll_request *req = arg;
  /* Two reads in one round trip: the course, locked against other
   * enrollments until the commit, and this learner's enrollment in it. */
  course *c;
  void **rows;
  size_t enrolled;
  uow_value params[] = {uow_int64(req->course_id), uow_text(req->learner)};
  uow_fetch_item reads[] = {
      uow_fetch_get(&course_entity, &req->course_id, UOW_FOR_UPDATE, (void **)&c),
      uow_fetch_find(&enrollment_entity, "course_id = ? AND learner = ?", params, 2, 0, &rows,
                     &enrolled),
  };
  int rc = uow_fetch(unit, reads, 2);
  if (rc == UOW_ENOTFOUND)
    return NO_SUCH_COURSE;
  if (rc)
    return rc;
  if (enrolled)
    return ALREADY_ENROLLED;
  if (c->seats_left == 0)
    return COURSE_FULL;
  c->seats_left--;

  enrollment *e;
  if ((rc = uow_new(unit, &enrollment_entity, (void **)&e)))
    return rc;
  e->course = c;
  e->learner = uow_strdup(unit, req->learner);
  e->enrolled_at = now_seconds();

  char text[256];
  snprintf(text, sizeof(text), "%s took a seat in %s", req->learner, c->title);
  if ((rc = record_audit(unit, "enroll", text)))
    return rc;
  int len = snprintf(text, sizeof(text), "{\"course\":%" PRId64 ",\"learner\":\"%s\"}", c->id,
                     req->learner);
  return uow_emit(unit, "enrollment.created", req->learner, text, (size_t)len);
}

/* ---- delivering the events: the relay hands them to this sink ---- */

typedef struct notice_board {
  size_t shown; /* events printed */
  size_t total; /* events delivered */
} notice_board;

/* A sink: a real service would call a mail or message API here. */
static int announce(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                    size_t errcap) {
  (void)err;
  (void)errcap;
  notice_board *board = ctx;
  for (size_t i = 0; i < n; i++, board->total++)
    if (board->shown < 3) {
      printf("   %-10s %-20s %.*s\n", events[i].event_id, events[i].topic,
             (int)events[i].payload_len, (const char *)events[i].payload);
      board->shown++;
    }
  *delivered = n;
  return UOW_OK;
}

static int deliver_events(const char *url) {
  uow_env *env;
  if (open_env(url, &env))
    return 1;
  notice_board board = {0, 0};
  uow_sink sink = {UOW_SINK_VERSION, "notice-board", announce, NULL, &board};
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  int rc = UOW_OK;
  do /* one event per key per pass: run until the backlog is empty */
    rc = uow_relay_once(env, &sink, NULL, &stats);
  while (rc == UOW_OK && stats.backlog > 0);
  if (rc)
    fprintf(stderr, "relay: %s\n", uow_env_errmsg(env));
  uow_env_close(env);
  if (board.total > board.shown)
    printf("   ... and %zu more\n", board.total - board.shown);
  printf("   %" PRIu64 " events delivered, %" PRId64 " left\n", stats.delivered, stats.backlog);
  return rc ? 1 : 0;
}

static int create_course(uow_env *env, const char *title, int64_t seats, int64_t *id) {
  uow_unit *unit;
  course *c;
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK && (rc = uow_new(unit, &course_entity, (void **)&c)) == UOW_OK) {
    c->title = (char *)title;
    c->seats = c->seats_left = seats;
    rc = uow_commit(unit);
    *id = c->id;
  }
  if (rc)
    fprintf(stderr, "enrollment: create course: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

typedef struct course_report {
  int64_t seats, seats_left;
  size_t enrollments, audits, events;
} course_report;

static int report_course(uow_env *env, int64_t id, course_report *r) {
  uow_unit *unit;
  course *c;
  void **rows;
  uow_value by_course[] = {uow_int64(id)};
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK && (rc = uow_get(unit, &course_entity, &id, (void **)&c)) == UOW_OK &&
      (rc = uow_find(unit, &enrollment_entity, "course_id = ?", by_course, 1, &rows,
                     &r->enrollments)) == UOW_OK &&
      (rc = uow_find(unit, &audit_entity, "action = 'enroll'", NULL, 0, &rows, &r->audits)) ==
          UOW_OK)
    rc = uow_find(unit, &outbox_event_entity, "topic = 'enrollment.created'", NULL, 0, &rows,
                  &r->events);
  if (rc == UOW_OK) {
    r->seats = c->seats;
    r->seats_left = c->seats_left;
  } else {
    fprintf(stderr, "enrollment: report: %s\n", uow_errmsg(unit));
  }
  uow_end(unit);
  return rc;
}

/* ---- the demo ---- */

static int try_enroll(uow_env *env, int64_t course_id, const char *title, const char *learner) {
  enroll_request req = {course_id, learner};
  int rc = uow_run(env, enroll, &req, NULL);
  printf("  %-8s -> %-16s %s\n", learner, title, outcome_text(rc));
  if (rc < 0)
    printf("             %s\n", uow_env_errmsg(env));
  return rc;
}

typedef struct counts {
  int worker, enrolled, full, duplicate, failed;
} counts;

/* One process of the rush: opens its own environment (connections never cross a fork). */
static int rush(const char *url, int64_t course_id, int worker, int learners, int start_fd,
                int pipe_fd) {
  uow_env *env;
  if (open_env(url, &env))
    return 1;
  /* Wait for the starting gun so that every process competes from the first unit. */
  char go;
  if (read(start_fd, &go, 1) < 0)
    return 1;
  counts c = {worker, 0, 0, 0, 0};
  for (int i = 0; i < learners; i++) {
    char learner[32];
    snprintf(learner, sizeof(learner), "p%d-learner%02d", worker, i);
    enroll_request req = {course_id, learner};
    int rc = uow_run(env, enroll, &req, NULL);
    if (rc == 0)
      c.enrolled++;
    else if (rc == COURSE_FULL)
      c.full++;
    else if (rc == ALREADY_ENROLLED)
      c.duplicate++;
    else {
      c.failed++;
      fprintf(stderr, "  process %d: %s\n", worker, uow_env_errmsg(env));
    }
  }
  uow_env_close(env);
  ssize_t n = write(pipe_fd, &c, sizeof(c));
  return n == (ssize_t)sizeof(c) ? 0 : 1;
}

static void usage(void) {
  printf("usage: enrollment [--db PATH | --store URL] [--processes N] [--seats N] "
         "[--learners N]\n"
         "  --db PATH       SQLite file (default enrollment.db, recreated)\n"
         "  --store URL     any store URL, e.g. postgresql://...\n"
         "  --processes N   processes in the rush (default 4)\n"
         "  --seats N       seats of the rushed course (default 20)\n"
         "  --learners N    learners per process (default 10)\n");
}

int main(int argc, char **argv) {
  const char *db = "enrollment.db";
  const char *store = NULL;
  int processes = 4, seats = 20, learners = 10;
  for (int i = 1; i < argc; i++) {
    bool has_value = i + 1 < argc;
    if (strcmp(argv[i], "--db") == 0 && has_value)
      db = argv[++i];
    else if (strcmp(argv[i], "--store") == 0 && has_value)
      store = argv[++i];
    else if (strcmp(argv[i], "--processes") == 0 && has_value)
      processes = atoi(argv[++i]);
    else if (strcmp(argv[i], "--seats") == 0 && has_value)
      seats = atoi(argv[++i]);
    else if (strcmp(argv[i], "--learners") == 0 && has_value)
      learners = atoi(argv[++i]);
    else {
      usage();
      return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (processes < 1 || processes > 64 || seats < 0 || learners < 0) {
    usage();
    return 2;
  }
  char url[1024];
  if (store) {
    snprintf(url, sizeof(url), "%s", store);
  } else {
    /* A fresh demo every time: remove the file and its WAL companions. */
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
      snprintf(url, sizeof(url), "%s%s", db, suffixes[i]);
      if (unlink(url) != 0 && errno != ENOENT)
        perror(url);
    }
    snprintf(url, sizeof(url), "sqlite:%s", db);
  }

  uow_env *env;
  if (open_env(url, &env))
    return 1;
  if (store) {
    /* A shared server: start from empty tables so that the figures below are this run's. */
    uow_unit *unit;
    if (uow_begin(env, &unit) == UOW_OK) {
      const char *clear[] = {"DELETE FROM demo_enrollments", "DELETE FROM demo_audit_log",
                             "DELETE FROM demo_courses", "DELETE FROM uow_outbox"};
      if (uow_env_create_schema(env) == UOW_OK)
        for (size_t i = 0; i < 4; i++)
          uow_exec(unit, "main", clear[i], NULL, 0);
      uow_commit(unit);
      uow_end(unit);
    }
  }
  if (uow_env_create_schema(env)) {
    fprintf(stderr, "enrollment: %s\n", uow_env_errmsg(env));
    return 1;
  }
  printf("libuow enrollment demo on %s\n\n", store ? "the given store" : url);

  int64_t intro, rushed;
  if (create_course(env, "Intro to C", 2, &intro) ||
      create_course(env, "Databases 101", seats, &rushed))
    return 1;

  printf("1. One enrollment is one unit: seat, enrollment, audit row and event together\n");
  try_enroll(env, intro, "Intro to C", "ada");
  printf("\n2. A duplicate enrollment is rejected and changes nothing\n");
  try_enroll(env, intro, "Intro to C", "ada");
  printf("\n3. A full course is rejected\n");
  try_enroll(env, intro, "Intro to C", "grace");
  try_enroll(env, intro, "Intro to C", "linus");
  course_report r;
  if (report_course(env, intro, &r))
    return 1;
  printf("   Intro to C: %" PRId64 " of %" PRId64 " seats taken, %zu enrollments, %zu audit rows, "
         "%zu events\n",
         r.seats - r.seats_left, r.seats, r.enrollments, r.audits, r.events);
  uow_env_close(env);

  printf("\n4. %d processes rush %d learners each into Databases 101 (%d seats) at once\n",
         processes, learners, seats);
  int fds[2], start[2];
  if (pipe(fds) != 0 || pipe(start) != 0) {
    perror("pipe");
    return 1;
  }
  fflush(stdout);
  for (int p = 0; p < processes; p++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      close(fds[0]);
      close(start[1]);
      _exit(rush(url, rushed, p + 1, learners, start[0], fds[1]));
    }
  }
  close(fds[1]);
  close(start[0]);
  close(start[1]); /* the starting gun: every child's read returns now */
  counts total = {0, 0, 0, 0, 0};
  counts per[64];
  memset(per, 0, sizeof(per));
  int children_ok = 1;
  for (int p = 0; p < processes; p++) {
    int status;
    counts c;
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      children_ok = 0;
    if (read(fds[0], &c, sizeof(c)) == (ssize_t)sizeof(c) && c.worker >= 1 &&
        c.worker <= processes) {
      per[c.worker - 1] = c;
      total.enrolled += c.enrolled;
      total.full += c.full;
      total.duplicate += c.duplicate;
      total.failed += c.failed;
    }
  }
  close(fds[0]);
  for (int p = 0; p < processes; p++)
    printf("   process %d: %2d enrolled, %2d turned away (full)\n", p + 1, per[p].enrolled,
           per[p].full);

  if (open_env(url, &env) || report_course(env, rushed, &r))
    return 1;
  uow_env_close(env);
  int64_t taken = r.seats - r.seats_left;
  bool consistent = children_ok && total.failed == 0 && r.seats_left >= 0 &&
                    taken == (int64_t)r.enrollments && (int64_t)total.enrolled == taken &&
                    taken == (r.seats < processes * learners ? r.seats : processes * learners);
  printf("\n   Databases 101: %" PRId64 " seats, %" PRId64 " taken, %" PRId64 " left\n", r.seats,
         taken, r.seats_left);
  printf("   enrollments stored: %zu   enrolled answers: %d   turned away: %d   errors: %d\n",
         r.enrollments, total.enrolled, total.full, total.failed);
  printf("   %s\n", consistent ? "never oversold: every seat taken once, every answer true"
                               : "INCONSISTENT: see the figures above");

  printf("\n5. The relay delivers the committed events, at least once, in order per learner\n");
  int delivered = deliver_events(url);
  return consistent && delivered == 0 ? 0 : 1;
}
