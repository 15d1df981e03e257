/*
 * coord.c - atomic commit across stores: the two-phase commit coordinator.
 *
 * A unit that wrote to two or more stores commits like this (DESIGN.md,
 * "Atomic commit across stores"):
 *
 *   1. every write is flushed;
 *   2. every written store but the decider runs PREPARE TRANSACTION under a
 *      gid that names the unit, its decider and the participant;
 *   3. the decider commits its own writes, the outbox rows and a 'commit'
 *      decision row in one transaction: this COMMIT is the commit point;
 *   4. every prepared store runs COMMIT PREPARED;
 *   5. the decision row is deleted by the decider's next such transaction.
 *
 * The decider is the one written store that cannot prepare (SQLite, or a
 * PostgreSQL server with max_prepared_transactions = 0), else the configured
 * decider store, else the first written store. Two stores that cannot prepare
 * cannot share a unit; that is refused before anything is sent to either.
 *
 * A lost connection leaves prepared transactions behind; the process
 * remembers them and settles them at its next uow_begin. A crash leaves them
 * behind too, and then uow_recover() lists them and
 * asks each one's decider: a 'commit' decision commits it; no decision means
 * the unit never reached step 3, so recovery writes an 'abort' decision (the
 * decision's primary key makes this wait for, and lose against, a decider
 * transaction still in flight) and rolls it back. Nothing waits for a timeout.
 *
 * A gid reads "uow1:<unit id>:<decider>:<participant>": the library's tag and
 * format version, the unit id (hex nonce, '-', counter), and two store names
 * of at most UOW__STORE_NAME_MAX bytes; at most 5 + 37 + 2 * 64 + 2 < 200 bytes.
 *
 * Crash points (UOW_CRASH_AT=name or name@N, builds with UOW_CRASH_POINTS):
 *   before_prepare_K, after_prepare_K       around the K-th participant's prepare
 *   before_decision, after_decision         around the decider's COMMIT
 *   before_commit_prepared_K, after_commit_prepared_K
 *   during_cleanup                          a commit deleting finished decisions
 *   recover_before_settle, recover_after_fence, recover_before_delete
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Decision records whose deletion waits in one store's queue; beyond this the
 * queue stops growing and uow_recover() removes the rest. */
#define FINISHED_MAX 4096
/* Finished decisions deleted by one commit. */
#define CLEANUP_BATCH 32

/* ---- crash points ---- */

void uow__crash_point(const char *name, unsigned index) {
#ifdef UOW_CRASH_POINTS
  static unsigned hits; /* how often the chosen point was reached */
  const char *spec = getenv("UOW_CRASH_AT");
  if (!spec || !*spec)
    return;
  char point[96];
  if (index)
    snprintf(point, sizeof(point), "%s_%u", name, index);
  else
    snprintf(point, sizeof(point), "%s", name);
  size_t n = strcspn(spec, "@");
  if (n != strlen(point) || strncmp(spec, point, n) != 0)
    return;
  unsigned nth = spec[n] == '@' ? (unsigned)strtoul(spec + n + 1, NULL, 10) : 1;
  if (__atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) >= nth)
    raise(SIGKILL);
#else
  (void)name;
  (void)index;
#endif
}

/* ---- which stores take part, and who decides ---- */

/* UOW_OK if `store` can prepare its part of a multi-store unit now. */
static int prepare_status(const uow_store *store, uow_status *st) {
  const uow_store_ops *ops = store->ops;
  if (!(ops->caps & UOW_STORE_PREPARE) || !ops->prepare || !ops->commit_prepared ||
      !ops->rollback_prepared)
    return uow_status_set(st, UOW_EMISUSE, "%s stores cannot prepare a transaction", ops->scheme);
  return ops->prepare_ready ? ops->prepare_ready(store->driver, st) : UOW_OK;
}

uint64_t uow__coord_writers(const uow_unit *unit) {
  uint64_t mask = 0;
  for (size_t i = 0; i < unit->nstores; i++)
    if (unit->stores[i].wrote)
      mask |= UINT64_C(1) << i;
  return mask;
}

int uow__coord_plan(uow_unit *unit, uint64_t writers, uow_store **decider) {
  *decider = NULL;
  size_t count = 0, cannot = 0;
  uow_store *first = NULL, *unprepared[2] = {NULL, NULL};
  uow_status why[2];
  for (size_t i = 0; i < unit->nstores; i++) {
    if (!(writers & (UINT64_C(1) << i)))
      continue;
    uow_store *store = unit->stores[i].store;
    count++;
    if (!first)
      first = store;
    uow_status st = {0, ""};
    if (prepare_status(store, &st) != UOW_OK) {
      if (cannot < 2) {
        unprepared[cannot] = store;
        why[cannot] = st;
      }
      cannot++;
    }
  }
  if (count < 2)
    return UOW_OK;
  if (cannot >= 2)
    return uow__unit_fail(
        unit, UOW_EMISUSE,
        "this unit writes to stores '%s' and '%s', and neither can prepare a transaction "
        "('%s': %s; '%s': %s). A unit may write to at most one such store, which then "
        "decides the unit; nothing was written to the second. Keep those tables in one "
        "store, or split the work into two units linked by an outbox event",
        unprepared[0]->name, unprepared[1]->name, unprepared[0]->name, why[0].message,
        unprepared[1]->name, why[1].message);
  if (cannot == 1) {
    *decider = unprepared[0];
    return UOW_OK;
  }
  uow_store *named = uow__env_store(unit->env, unit->env->opts.decider_store);
  *decider = named && (writers & (UINT64_C(1) << named->index)) ? named : first;
  return UOW_OK;
}

/* ---- the commit protocol ---- */

/* "uow1:<unit>:<decider>:<participant>" into `gid`. */
static void make_gid(char *gid, size_t cap, const char *unit_id, const uow_store *decider,
                     const uow_store *participant) {
  snprintf(gid, cap, UOW__GID_PREFIX "%s:%s:%s", unit_id, decider->name, participant->name);
}

bool uow__gid_parse(const char *gid, uow_gid_parts *out) {
  if (strncmp(gid, UOW__GID_PREFIX, strlen(UOW__GID_PREFIX)) != 0)
    return false;
  const char *p = gid + strlen(UOW__GID_PREFIX);
  char *fields[3] = {out->unit_id, out->decider, out->participant};
  size_t caps[3] = {sizeof(out->unit_id), sizeof(out->decider), sizeof(out->participant)};
  for (int i = 0; i < 3; i++) {
    size_t n = strcspn(p, ":");
    if (n == 0 || n >= caps[i] || (i < 2 && p[n] != ':') || (i == 2 && p[n]))
      return false;
    memcpy(fields[i], p, n);
    fields[i][n] = '\0';
    p += n + (i < 2);
  }
  return true;
}

/* Fail the unit with a store's error during the commit protocol. */
static int protocol_error(uow_unit *unit, const char *what, uow_unit_store *us,
                          const uow_status *st) {
  return uow__unit_store_error(unit, what, us, st);
}

int uow__coord_prepare(uow_unit *unit, uow_store *decider) {
  unsigned k = 0;
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->wrote || us->store == decider)
      continue;
    char gid[256];
    make_gid(gid, sizeof(gid), unit->id, decider, us->store);
    uow__crash_point("before_prepare", ++k);
    uow_status st = {0, ""};
    int rc = us->store->ops->prepare(us->conn, gid, &st);
    if (rc) {
      /* PostgreSQL ends the transaction even when PREPARE fails; when the
       * connection was lost, the PREPARE may have happened all the same. */
      us->in_txn = false;
      uow__coord_doubt(unit->env, gid); /* settled (found absent, or rolled back) later */
      protocol_error(unit, "prepare", us, &st);
      uow__coord_abort(unit, decider, false);
      return rc == UOW_EINDOUBT ? UOW_EIO : rc;
    }
    us->in_txn = false;
    us->prepared = true;
    uow__crash_point("after_prepare", k);
  }
  return UOW_OK;
}

uow_decision_row *uow__coord_decision(uow_unit *unit, int64_t now) {
  uow_decision_row *row = uow__arena_alloc(&unit->arena, sizeof(*row));
  uow_buf names;
  uow__buf_init(&names);
  for (size_t i = 0; i < unit->nstores; i++) {
    if (!unit->stores[i].prepared)
      continue;
    if (names.len)
      uow__buf_puts(&names, ",");
    uow__buf_puts(&names, unit->stores[i].store->name);
  }
  char *participants = uow__buf_status(&names) == UOW_OK && names.len
                           ? uow__arena_strndup(&unit->arena, names.data, names.len)
                           : NULL;
  uow__buf_free(&names);
  if (!row || !participants) {
    uow__unit_fail(unit, UOW_ENOMEM, "commit: out of memory");
    return NULL;
  }
  row->unit_id = unit->id;
  row->outcome = "commit";
  row->participants = participants;
  row->created_at = now;
  return row;
}

/* Put decision ids back on (or onto) a store's queue; ids that do not fit are
 * freed and left to uow_recover(). Takes ownership of every id. */
static void queue_finished(uow_store *store, char **ids, size_t n) {
  pthread_mutex_lock(&store->lock);
  for (size_t i = 0; i < n; i++) {
    char **slot =
        store->finished.len < FINISHED_MAX ? uow__vec_push(&store->finished, sizeof(*slot)) : NULL;
    if (slot)
      *slot = ids[i];
    else
      uow__free(ids[i]);
  }
  pthread_mutex_unlock(&store->lock);
}

/* DELETE the 'commit' decisions with the given unit ids, on `conn` (in
 * whatever transaction it is in). */
static int delete_decisions(uow_store *store, uow_store_conn *conn, char *const *ids, size_t n,
                            int64_t *deleted, uow_status *st) {
  uow_value params[CLEANUP_BATCH];
  char sql[160 + 2 * CLEANUP_BATCH];
  size_t len = (size_t)snprintf(
      sql, sizeof(sql), "DELETE FROM uow_decision WHERE outcome = 'commit' AND unit_id IN (");
  for (size_t i = 0; i < n && i < CLEANUP_BATCH; i++) {
    params[i] = uow_text(ids[i]);
    len += (size_t)snprintf(sql + len, sizeof(sql) - len, i ? ",?" : "?");
  }
  snprintf(sql + len, sizeof(sql) - len, ")");
  int64_t count = 0;
  int rc = store->ops->exec(conn, sql, params, n < CLEANUP_BATCH ? n : CLEANUP_BATCH, &count, st);
  if (deleted)
    *deleted = count;
  return rc;
}

int uow__coord_cleanup(uow_unit *unit, uow_unit_store *decider) {
  uow_store *store = decider->store;
  pthread_mutex_lock(&store->lock);
  size_t n = store->finished.len < CLEANUP_BATCH ? store->finished.len : CLEANUP_BATCH;
  for (size_t i = 0; i < n; i++) {
    char **slot = uow__vec_push(&unit->cleanup, sizeof(*slot));
    if (!slot) {
      n = i;
      break;
    }
    *slot = UOW_VEC_AT(&store->finished, char *, store->finished.len - 1 - i);
  }
  store->finished.len -= n;
  pthread_mutex_unlock(&store->lock);
  if (!unit->cleanup.len)
    return UOW_OK;
  uow_status st = {0, ""};
  int rc =
      delete_decisions(store, decider->conn, unit->cleanup.items, unit->cleanup.len, NULL, &st);
  if (rc)
    return protocol_error(unit, "commit (removing finished decision records)", decider, &st);
  uow__crash_point("during_cleanup", 0);
  return UOW_OK;
}

static void free_cleanup(uow_unit *unit) {
  for (size_t i = 0; i < unit->cleanup.len; i++)
    uow__free(UOW_VEC_AT(&unit->cleanup, char *, i));
  unit->cleanup.len = 0;
}

void uow__coord_finish(uow_unit *unit, uow_store *decider) {
  free_cleanup(unit);
  bool all = true;
  unsigned k = 0;
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->prepared)
      continue;
    char gid[256];
    make_gid(gid, sizeof(gid), unit->id, decider, us->store);
    uow__crash_point("before_commit_prepared", ++k);
    uow_status st = {0, ""};
    int rc = us->store->ops->commit_prepared(us->conn, gid, &st);
    us->prepared = false;
    if (rc && rc != UOW_ENOTFOUND) {
      /* Committed all the same: the decision is durable, and the next
       * uow_begin (or uow_recover) finishes this participant. */
      all = false;
      uow__coord_doubt(unit->env, gid);
      uow__pool_release(us->store, us->conn, false);
      us->conn = NULL;
    }
    uow__crash_point("after_commit_prepared", k);
  }
  if (!all)
    return;
  char *id = uow__strdup(unit->id);
  if (id)
    queue_finished(decider, &id, 1);
}

void uow__coord_abort(uow_unit *unit, uow_store *decider, bool in_doubt) {
  if (unit->cleanup.len) {
    queue_finished(decider, unit->cleanup.items, unit->cleanup.len);
    unit->cleanup.len = 0;
  }
  for (size_t i = 0; i < unit->nstores; i++) {
    uow_unit_store *us = &unit->stores[i];
    if (!us->prepared)
      continue;
    us->prepared = false;
    char gid[256];
    make_gid(gid, sizeof(gid), unit->id, decider, us->store);
    uow_status st = {0, ""};
    if (in_doubt) {
      uow__coord_doubt(unit->env, gid); /* settled the way the decider went */
      continue;
    }
    if (us->store->ops->rollback_prepared(us->conn, gid, &st) && st.code != UOW_ENOTFOUND) {
      /* Left prepared: recovery finds no decision and rolls it back. */
      uow__coord_doubt(unit->env, gid);
      uow__pool_release(us->store, us->conn, false);
      us->conn = NULL;
    }
  }
}

void uow__coord_doubt(uow_env *env, const char *gid) {
  char *copy = uow__strdup(gid);
  pthread_mutex_lock(&env->lock);
  char **slot = copy ? uow__vec_push(&env->doubts, sizeof(*slot)) : NULL;
  if (slot)
    *slot = copy;
  else
    uow__free(copy); /* out of memory: uow_recover() still finds it */
  __atomic_store_n(&env->ndoubts, env->doubts.len, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&env->lock);
}

bool uow__coord_store_in_doubt(uow_env *env, const uow_store *store) {
  if (!__atomic_load_n(&env->ndoubts, __ATOMIC_ACQUIRE))
    return false;
  bool found = false;
  pthread_mutex_lock(&env->lock);
  for (size_t i = 0; i < env->doubts.len && !found; i++) {
    uow_gid_parts parts;
    found = uow__gid_parse(UOW_VEC_AT(&env->doubts, char *, i), &parts) &&
            strcmp(parts.participant, store->name) == 0;
  }
  pthread_mutex_unlock(&env->lock);
  return found;
}

/* One batch of finished decisions, deleted in a transaction of its own. */
typedef struct id_batch {
  char *const *ids;
  size_t n;
} id_batch;

static int delete_batch(uow_store *store, uow_store_conn *conn, void *ctx, uow_status *st) {
  const id_batch *batch = ctx;
  return delete_decisions(store, conn, batch->ids, batch->n, NULL, st);
}

void uow__coord_drain(uow_env *env) {
  for (size_t s = 0; s < env->stores.len; s++) {
    uow_store *store = UOW_VEC_AT(&env->stores, uow_store *, s);
    while (store->finished.len) {
      size_t n = store->finished.len < CLEANUP_BATCH ? store->finished.len : CLEANUP_BATCH;
      char **ids = (char **)store->finished.items + store->finished.len - n;
      id_batch batch = {ids, n};
      uow_status st = {0, ""};
      uow__pooled_transaction(store, delete_batch, &batch, &st);
      for (size_t i = 0; i < n; i++)
        uow__free(ids[i]);
      store->finished.len -= n; /* what failed is left to uow_recover() */
    }
    uow__vec_free(&store->finished);
  }
}
