/*
 * recover.c - settling units left in doubt, and the environment's status.
 *
 * uow_recover() works in three steps (see coord.c for the protocol):
 *
 *   1. Read the 'commit' decisions every store holds. This comes first: every
 *      participant of such a unit prepared before its decision committed, so
 *      a participant still prepared now shows up in step 2.
 *   2. List the prepared transactions of libuow in every store that can
 *      prepare, and settle each by asking its decider: a 'commit' decision
 *      commits it, an 'abort' decision rolls it back, and no decision gets an
 *      'abort' decision written first (a fence: the decision's primary key
 *      makes it wait for a decider transaction in flight and fail if that one
 *      committed), then a rollback.
 *   3. Delete the decisions read in step 1 whose participants were all listed
 *      in step 2 with nothing left prepared: every participant has finished.
 *      Abort records are deleted after ABORT_RETENTION_MS.
 *
 * Every step uses its own short transactions on pooled connections, so it
 * runs beside live units and beside another recovery.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Abort records outlive any committer that could still be stalled behind them. */
#define ABORT_RETENTION_MS (7LL * 24 * 3600 * 1000)

/* A commit decision read in step 1. */
typedef struct decision {
  uow_store *decider;
  char *unit_id;
  char *participants;
  bool keep; /* a participant is still prepared, or could not be listed */
} decision;

typedef struct recovery {
  uow_env *env;
  uow_recover_report *report;
  uow_vec decisions; /* decision */
  uow_vec gids;      /* char *, the current store's listing */
  uint64_t listed;   /* stores whose prepared transactions were all listed */
  int rc;            /* first failure */
  bool quiet;        /* settling in the background: leave the env's message alone */
} recovery;

static void note_failure(recovery *r, int code, const char *fmt, ...) UOW_PRINTF(3, 4);
static void note_failure(recovery *r, int code, const char *fmt, ...) {
  if (r->rc)
    return; /* the first failure is the one reported */
  r->rc = code == UOW_ENOMEM ? UOW_ENOMEM : UOW_EIO;
  if (r->quiet)
    return;
  char msg[sizeof(r->env->errmsg)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  uow__env_fail(r->env, r->rc, "recover: %s", msg);
}

static bool can_list(const uow_store *store) {
  return (store->ops->caps & UOW_STORE_PREPARE) && store->ops->list_prepared &&
         store->ops->commit_prepared && store->ops->rollback_prepared;
}

/* ---- step 1: commit decisions ---- */

static char *text_dup(const uow_value *v) {
  return uow__strndup(v->v.bytes.data ? v->v.bytes.data : "", v->v.bytes.size);
}

typedef struct decision_reader {
  recovery *r;
  uow_store *store;
} decision_reader;

static int take_decision(void *ctx, const uow_value *row) {
  decision_reader *dr = ctx;
  decision *d = uow__vec_push(&dr->r->decisions, sizeof(*d));
  if (!d)
    return UOW_ENOMEM;
  d->decider = dr->store;
  d->unit_id = text_dup(&row[0]);
  d->participants = text_dup(&row[2]);
  if (!d->unit_id || !d->participants) {
    uow__free(d->unit_id);
    uow__free(d->participants);
    dr->r->decisions.len--;
    return UOW_ENOMEM;
  }
  return UOW_OK;
}

static int read_decisions(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  decision_reader dr = {ctx, store};
  const uow_value outcome = uow_text("commit");
  return store->ops->read(conn, &uow__decision_entity, "outcome = ?", &outcome, 1, 0, take_decision,
                          &dr, st);
}

/* ---- step 2: settle each prepared transaction ---- */

static void collect_gid(void *ctx, const char *gid) {
  recovery *r = ctx;
  char *copy = uow__strdup(gid);
  char **slot = copy ? uow__vec_push(&r->gids, sizeof(*slot)) : NULL;
  if (!slot) {
    uow__free(copy);
    note_failure(r, UOW_ENOMEM, "out of memory listing prepared transactions");
    return;
  }
  *slot = copy;
}

typedef struct lookup {
  const char *unit_id;
  char outcome[16]; /* "" when there is no decision */
} lookup;

static int remember_outcome(void *ctx, const uow_value *row) {
  lookup *l = ctx;
  const char *text = row[1].v.bytes.data ? row[1].v.bytes.data : "";
  snprintf(l->outcome, sizeof(l->outcome), "%.*s", (int)row[1].v.bytes.size, text);
  return UOW_OK;
}

static int read_outcome(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  lookup *l = ctx;
  l->outcome[0] = '\0';
  const uow_value key = uow_text(l->unit_id);
  return store->ops->read(conn, &uow__decision_entity, NULL, &key, 1, 0, remember_outcome, l, st);
}

static int write_abort(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  lookup *l = ctx;
  uow_value values[4] = {uow_text(l->unit_id), uow_text("abort"), uow_text(""),
                         uow_int64(uow__now_ms())};
  uow_write w;
  memset(&w, 0, sizeof(w));
  w.kind = UOW_WRITE_INSERT;
  w.entity = &uow__decision_entity;
  w.values = values;
  w.columns = (UINT64_C(1) << uow__decision_entity.ncolumns) - 1;
  return store->ops->write(conn, &w, 1, false, st);
}

/* The decision for `unit_id` in `decider`, fencing the unit with an abort
 * decision when there is none. */
static int decide(recovery *r, uow_store *decider, lookup *l, uow_status *st) {
  int rc = uow__pooled_transaction(decider, read_outcome, l, st);
  if (rc || l->outcome[0])
    return rc;
  rc = uow__pooled_transaction(decider, write_abort, l, st);
  if (rc == UOW_OK) {
    r->report->fenced++;
    snprintf(l->outcome, sizeof(l->outcome), "abort");
    uow__crash_point("recover_after_fence", 0);
    return UOW_OK;
  }
  if (rc != UOW_ECONSTRAINT)
    return rc;
  /* The unit's own decider transaction got there first: ask again. */
  return uow__pooled_transaction(decider, read_outcome, l, st);
}

/* Settle one prepared transaction of `store`, listed under `gid`. */
static void settle(recovery *r, uow_store *store, uow_store_conn *conn, const char *gid,
                   const uow_gid_parts *parts) {
  uow_store *decider = uow__env_store(r->env, parts->decider);
  if (!decider || !uow__store_is_sql(decider)) {
    r->report->skipped++;
    note_failure(r, UOW_EIO,
                 "prepared transaction '%s' in store '%s' is decided by store '%s', which is "
                 "not in this environment: add it and run recovery again",
                 gid, store->name, parts->decider);
    return;
  }
  uow__crash_point("recover_before_settle", 0);
  lookup l = {parts->unit_id, ""};
  uow_status st = {0, ""};
  int rc = decide(r, decider, &l, &st);
  if (rc) {
    r->report->skipped++;
    note_failure(r, rc, "cannot read or write the decision of '%s' in store '%s': %s", gid,
                 decider->name, st.message);
    return;
  }
  bool commit = strcmp(l.outcome, "commit") == 0;
  rc = commit ? store->ops->commit_prepared(conn, gid, &st)
              : store->ops->rollback_prepared(conn, gid, &st);
  if (rc == UOW_ENOTFOUND)
    return; /* its committer or another recovery finished it meanwhile */
  if (rc) {
    r->report->skipped++;
    note_failure(r, rc, "%s of '%s' in store '%s' failed: %s",
                 commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED", gid, store->name, st.message);
    return;
  }
  if (commit)
    r->report->committed++;
  else
    r->report->rolled_back++;
}

/* Mark the step-1 decision of `unit_id` (if any) as still needed. */
static void keep_decision(recovery *r, const char *unit_id) {
  for (size_t i = 0; i < r->decisions.len; i++) {
    decision *d = &UOW_VEC_AT(&r->decisions, decision, i);
    if (strcmp(d->unit_id, unit_id) == 0)
      d->keep = true;
  }
}

static void free_gids(recovery *r) {
  for (size_t i = 0; i < r->gids.len; i++)
    uow__free(UOW_VEC_AT(&r->gids, char *, i));
  r->gids.len = 0;
}

static void settle_store(recovery *r, uow_store *store) {
  uow_store_conn *conn = NULL;
  bool reused;
  uow_status st = {0, ""};
  int rc = uow__pool_acquire(store, &conn, &reused, &st);
  if (rc == UOW_OK) {
    rc = store->ops->list_prepared(conn, UOW__GID_PREFIX, collect_gid, r, &st);
    if (rc == UOW_EIO && reused) { /* dropped while idle: one fresh try */
      uow__pool_release(store, conn, false);
      free_gids(r);
      if ((rc = uow__pool_acquire(store, &conn, &reused, &st)) == UOW_OK)
        rc = store->ops->list_prepared(conn, UOW__GID_PREFIX, collect_gid, r, &st);
    }
  }
  if (rc) {
    if (conn)
      uow__pool_release(store, conn, false);
    note_failure(r, rc, "cannot list the prepared transactions of store '%s': %s", store->name,
                 st.message);
    free_gids(r);
    return;
  }
  size_t before = r->report->skipped;
  for (size_t i = 0; i < r->gids.len; i++) {
    const char *gid = UOW_VEC_AT(&r->gids, char *, i);
    uow_gid_parts parts;
    if (!uow__gid_parse(gid, &parts) || strcmp(parts.participant, store->name) != 0)
      continue; /* another store's, on the same database */
    r->report->in_doubt++;
    size_t skipped = r->report->skipped;
    settle(r, store, conn, gid, &parts);
    if (r->report->skipped != skipped)
      keep_decision(r, parts.unit_id);
  }
  if (r->report->skipped == before && !r->rc)
    r->listed |= UINT64_C(1) << store->index;
  free_gids(r);
  uow__pool_release(store, conn, true);
}

/* ---- step 3: delete what is finished ---- */

/* True if every store named in `participants` was listed in step 2. */
static bool all_listed(recovery *r, const char *participants) {
  const char *p = participants;
  if (!*p)
    return false;
  while (*p) {
    size_t n = strcspn(p, ",");
    char name[UOW__STORE_NAME_MAX];
    if (n == 0 || n >= sizeof(name))
      return false;
    memcpy(name, p, n);
    name[n] = '\0';
    uow_store *store = uow__env_store(r->env, name);
    if (!store || !(r->listed & (UINT64_C(1) << store->index)))
      return false;
    p += n + (p[n] == ',');
  }
  return true;
}

typedef struct deletion {
  const char *sql;
  uow_value param;
  int64_t affected;
} deletion;

static int run_deletion(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  deletion *d = ctx;
  return store->ops->exec(conn, d->sql, &d->param, 1, &d->affected, st);
}

static void delete_finished(recovery *r) {
  for (size_t i = 0; i < r->decisions.len; i++) {
    decision *d = &UOW_VEC_AT(&r->decisions, decision, i);
    if (d->keep || !all_listed(r, d->participants))
      continue;
    uow__crash_point("recover_before_delete", 0);
    deletion del = {"DELETE FROM uow_decision WHERE unit_id = ? AND outcome = 'commit'",
                    uow_text(d->unit_id), 0};
    uow_status st = {0, ""};
    if (uow__pooled_transaction(d->decider, run_deletion, &del, &st))
      note_failure(r, st.code, "cannot delete the decision of unit %s in store '%s': %s",
                   d->unit_id, d->decider->name, st.message);
    else
      r->report->decisions_removed += (size_t)del.affected;
  }
  for (size_t s = 0; s < r->env->stores.len; s++) {
    uow_store *store = UOW_VEC_AT(&r->env->stores, uow_store *, s);
    if (!uow__store_is_sql(store))
      continue;
    deletion del = {"DELETE FROM uow_decision WHERE outcome = 'abort' AND created_at < ?",
                    uow_int64(uow__now_ms() - ABORT_RETENTION_MS), 0};
    uow_status st = {0, ""};
    if (uow__pooled_transaction(store, run_deletion, &del, &st))
      note_failure(r, st.code, "cannot delete old abort records in store '%s': %s", store->name,
                   st.message);
  }
}

int uow_recover(uow_env *env, uow_recover_report *report) {
  if (!env)
    return UOW_EINVAL;
  uow_recover_report ignored = UOW_RECOVER_REPORT_INIT;
  if (!report)
    report = &ignored;
  if (report->version != UOW_RECOVER_REPORT_VERSION)
    return uow__env_fail(env, UOW_EINVAL, "recover: report version %d is not %d", report->version,
                         UOW_RECOVER_REPORT_VERSION);
  memset(report, 0, sizeof(*report));
  report->version = UOW_RECOVER_REPORT_VERSION;
  recovery r;
  memset(&r, 0, sizeof(r));
  r.env = env;
  r.report = report;
  for (size_t s = 0; s < env->stores.len; s++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, s);
    uow_status st = {0, ""};
    int rc =
        uow__store_is_sql(store) ? uow__pooled_transaction(store, read_decisions, &r, &st) : UOW_OK;
    /* take_decision's ENOMEM comes back with no status from the store. */
    if (rc == UOW_ENOMEM && !st.code)
      note_failure(&r, rc, "out of memory reading the decision records of store '%s'", store->name);
    else if (rc)
      note_failure(&r, rc,
                   "cannot read the decision records of store '%s' (did uow_env_create_schema "
                   "run?): %s",
                   store->name, st.message);
  }
  for (size_t s = 0; s < env->stores.len; s++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, s);
    if (can_list(store))
      settle_store(&r, store);
  }
  if (!r.rc)
    delete_finished(&r);
  for (size_t i = 0; i < r.decisions.len; i++) {
    decision *d = &UOW_VEC_AT(&r.decisions, decision, i);
    uow__free(d->unit_id);
    uow__free(d->participants);
  }
  uow__vec_free(&r.decisions);
  uow__vec_free(&r.gids);
  return r.rc;
}

/* ---- what this process left in doubt ---- */

void uow__coord_settle_doubts(uow_env *env) {
  pthread_mutex_lock(&env->lock);
  uow_vec taken = env->doubts;
  memset(&env->doubts, 0, sizeof(env->doubts));
  __atomic_store_n(&env->ndoubts, 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&env->lock);

  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  recovery r;
  memset(&r, 0, sizeof(r));
  r.env = env;
  r.report = &report;
  r.quiet = true;
  for (size_t i = 0; i < taken.len; i++) {
    char *gid = UOW_VEC_AT(&taken, char *, i);
    uow_gid_parts parts;
    uow_store *store = uow__gid_parse(gid, &parts) ? uow__env_store(env, parts.participant) : NULL;
    uow_store_conn *conn = NULL;
    bool reused;
    uow_status st = {0, ""};
    size_t skipped = report.skipped;
    if (!store || uow__pool_acquire(store, &conn, &reused, &st)) {
      report.skipped++;
    } else {
      settle(&r, store, conn, gid, &parts);
      uow__pool_release(store, conn, report.skipped == skipped);
    }
    if (store && report.skipped != skipped)
      uow__coord_doubt(env, gid); /* the server is still away: later */
    uow__free(gid);
  }
  uow__vec_free(&taken);
}

/* ---- status ---- */

static void count_gid(void *ctx, const char *gid) {
  uow_store_status *s = ctx;
  uow_gid_parts parts;
  if (uow__gid_parse(gid, &parts) && strcmp(parts.participant, s->name) == 0)
    s->in_doubt++;
}

/* A count, or -1 with the reason in out->error; *rc becomes UOW_ENOMEM when
 * memory ran out. */
static int64_t count_rows(uow_store *store, uow_store_conn *conn, const char *sql,
                          uow_store_status *out, int *rc) {
  int64_t n = -1;
  uow_status st = {0, ""};
  int qrc = store->ops->query_int64(conn, sql, NULL, 0, &n, &st);
  if (qrc) {
    n = -1;
    if (qrc == UOW_ENOMEM)
      *rc = UOW_ENOMEM;
    if (!out->error[0])
      snprintf(out->error, sizeof(out->error), "%.*s", (int)sizeof(out->error) - 1, st.message);
  }
  return n;
}

/* Fill `out` for one store. UOW_ENOMEM when memory ran out on the way: then
 * what is missing says nothing about the store, and the caller must not
 * report it as unreachable or its counts as unknown. */
static int store_status(uow_store *store, uow_store_status *out) {
  memset(out, 0, sizeof(*out));
  out->name = store->name;
  out->url = store->url;
  out->scheme = store->ops->scheme;
  out->transactional = (store->ops->caps & UOW_STORE_TRANSACTIONAL) != 0;
  uow_status st = {0, ""};
  out->can_prepare = (store->ops->caps & UOW_STORE_PREPARE) && store->ops->prepare &&
                     (!store->ops->prepare_ready || !store->ops->prepare_ready(store->driver, &st));
  out->in_doubt = out->decisions = out->outbox_pending = out->outbox_dead = -1;
  uow_store_conn *conn;
  bool reused;
  int rc = uow__pool_acquire(store, &conn, &reused, &st);
  if (rc) {
    snprintf(out->error, sizeof(out->error), "%.*s", (int)sizeof(out->error) - 1, st.message);
    return rc == UOW_ENOMEM ? rc : UOW_OK;
  }
  out->reachable = true;
  if (can_list(store)) {
    out->in_doubt = 0;
    if ((rc = store->ops->list_prepared(conn, UOW__GID_PREFIX, count_gid, out, &st))) {
      out->in_doubt = -1;
      out->reachable = st.code != UOW_EIO;
      snprintf(out->error, sizeof(out->error), "%.*s", (int)sizeof(out->error) - 1, st.message);
      rc = rc == UOW_ENOMEM ? rc : UOW_OK;
    }
  } else {
    out->in_doubt = 0;
  }
  if (out->reachable && uow__store_is_sql(store)) {
    out->decisions = count_rows(store, conn, "SELECT count(*) FROM uow_decision", out, &rc);
    out->outbox_pending =
        count_rows(store, conn, "SELECT count(*) FROM uow_outbox WHERE state = 0", out, &rc);
    out->outbox_dead =
        count_rows(store, conn, "SELECT count(*) FROM uow_outbox WHERE state = 2", out, &rc);
  }
  uow__pool_release(store, conn, out->reachable);
  return rc;
}

int uow_env_status(uow_env *env, uow_store_status *out, size_t cap, size_t *count) {
  if (!env || !count || (cap && !out))
    return UOW_EINVAL;
  *count = env->stores.len;
  int rc = UOW_OK;
  for (size_t s = 0; s < env->stores.len && s < cap; s++) {
    int one = store_status(UOW_VEC_AT(&env->stores, uow_store *, s), &out[s]);
    if (one && !rc)
      rc = uow__env_fail(env, one, "status: store '%s': %s", out[s].name, out[s].error);
  }
  return rc;
}
