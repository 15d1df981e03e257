/*
 * run.c - uow_run(): begin, call the body, commit; roll back on failure; run
 * the body again after a conflict, with exponential backoff and jitter so
 * that units that collided do not collide again in lockstep.
 */
#include <string.h>

#include "core/core.h"

enum { DEFAULT_ATTEMPTS = 10, DEFAULT_BACKOFF_MS = 2, DEFAULT_MAX_BACKOFF_MS = 250 };

/* The unit's message goes to the environment, where the caller can read it after the end. */
static void keep_message(uow_env *env, uow_unit *unit, int rc) {
  if (uow_errmsg(unit)[0])
    uow__env_fail(env, rc, "%s", uow_errmsg(unit));
  else
    uow__env_fail(env, rc, "run: the function returned %d; the unit was rolled back", rc);
}

int uow_run(uow_env *env, uow_run_fn fn, void *arg, const uow_run_options *opts) {
  if (!env)
    return UOW_EINVAL;
  if (!fn)
    return uow__env_fail(env, UOW_EINVAL, "run: no function");
  if (opts && opts->version != UOW_RUN_OPTIONS_VERSION)
    return uow__env_fail(env, UOW_EINVAL, "run: unknown options version %d", opts->version);
  uow_run_options o = UOW_RUN_OPTIONS_INIT;
  if (opts)
    o = *opts;
  unsigned attempts = o.max_attempts ? o.max_attempts : DEFAULT_ATTEMPTS;
  unsigned backoff = o.backoff_ms ? o.backoff_ms : DEFAULT_BACKOFF_MS;
  unsigned max_backoff = o.max_backoff_ms ? o.max_backoff_ms : DEFAULT_MAX_BACKOFF_MS;
  uint64_t seed = uow__random_seed(&o) ^ env->nonce;
  seed = seed ? seed : 1;
  int rc = UOW_OK;
  for (unsigned attempt = 1; attempt <= attempts; attempt++) {
    uow_unit *unit;
    rc = uow_begin_ex(env, &o.begin, &unit);
    if (rc)
      return rc;
    rc = fn(unit, arg);
    if (rc == UOW_OK)
      rc = uow_commit(unit);
    if (rc != UOW_OK)
      keep_message(env, unit, rc);
    uow_end(unit); /* rolls back whatever did not commit */
    if (rc != UOW_ECONFLICT)
      return rc;
    if (attempt < attempts) {
      uow__sleep_ms(uow__jitter(backoff, &seed));
      backoff = backoff * 2 > max_backoff ? max_backoff : backoff * 2;
    }
  }
  return rc;
}
