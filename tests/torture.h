/*
 * torture.h - the allocation-failure torture that every test_alloc* suite
 * shares: a counting allocator installed with uow_set_allocator() that makes
 * the Nth allocation fail, and a driver that runs one scenario once for each
 * N = 1, 2, ... until a run completes without meeting a failure.
 *
 * Each run must return 0 or a code the scenario accepts (UOW_ENOMEM, and
 * whatever else it names), free every block it allocated (the allocator
 * counts them), and leave the stores as the scenario's check expects: all of
 * a unit or none of it. The driver counts what goes wrong instead of stopping
 * at the first, prints one summary line per scenario, e.g.
 * "2pc sqlite+pg: 106 failure points, 0 torn, 0 leaked, 0 wrong codes
 * (ENOMEM 102, completed 4) in 1.6 s" - "completed": runs that returned 0
 * because the library could do without the failed allocation - then fails
 * the test unless all three counts are 0. In the environment,
 * TORTURE_VERBOSE=1 prints one line per run, and TORTURE_PERSISTENT=1 makes
 * every allocation from the Nth on fail (memory that stays short).
 *
 * Include after <stdarg.h>, <stddef.h>, <stdint.h>, <setjmp.h> and <cmocka.h>.
 */
#ifndef UOW_TEST_TORTURE_H
#define UOW_TEST_TORTURE_H

#include <stdbool.h>
#include <stddef.h>

#include <stdio.h>

#include "uow.h"

/* Bytes of a run's message (the first failure's uow_errmsg or uow_env_errmsg). */
#define TORTURE_MSG 1024

typedef struct torture_scenario {
  const char *name; /* for the summary line, e.g. "2pc sqlite+pg" */
  void *ctx;        /* handed to every callback */
  /* Once before the first run and once after the last (may be NULL). */
  void (*setup)(void *ctx);
  void (*teardown)(void *ctx);
  /* Before each run, with no failure armed: make the stores what the run
   * expects (may be NULL). `point` is the allocation that will fail. */
  void (*prepare)(void *ctx, long point);
  /* The operation, with the failure armed: it opens and closes everything it
   * uses, stops at the first failure and returns its code (0 when it went
   * through), with that failure's message in `msg`. */
  int (*run)(void *ctx, char *msg, size_t cap);
  /* After each run, with no failure armed: check the stores (reading them
   * directly) after a run that returned `rc`; false when a unit is torn, a
   * failure wrote something or a success is missing (say why on stderr). */
  bool (*check)(void *ctx, int rc, long point);
  /* Codes a run may return besides 0 and UOW_ENOMEM (may be NULL). A
   * UOW_ENOMEM must come with a message that says "memory". */
  bool (*accepts)(void *ctx, int rc);
  /* Fail only every `stride`th allocation (0 or 1: every one). */
  long stride;
} torture_scenario;

/*
 * Run the scenario once per failure point, print its summary line and fail
 * the test if any run tore a unit, leaked or returned a wrong code. The
 * counting allocator is installed for the whole call (so that `prepare` and
 * `check` may use the library too) and removed at the end, after checking
 * that nothing allocated during the call is still live.
 */
void torture_run(const torture_scenario *scenario);

/* ---- writing a run ---- */

/* A run's code for a step that came out other than expected although the
 * library reported no failure (counted as a wrong code). */
#define TORTURE_UNEXPECTED 1000
/* The code kept for a commit that the run did not reach. */
#define TORTURE_NOT_REACHED 1

/* What a run's message says when the library gave an empty one (a wrong code). */
#define TORTURE_NO_MESSAGE "(no message)"

/* Put "<call>: <the library's message>" into `msg` (capacity `cap`). */
#define TORTURE_SAY(call, text)                                                                    \
  snprintf(msg, cap, "%s: %s", call, (text)[0] ? (text) : TORTURE_NO_MESSAGE)

/* Steps of a run: each runs only while `rc` is 0; a failure is said in `msg`. */
#define ENV_STEP(env, call)                                                                        \
  do {                                                                                             \
    if (!rc && (rc = (call)) != UOW_OK)                                                            \
      TORTURE_SAY(#call, uow_env_errmsg(env));                                                     \
  } while (0)

#define UNIT_STEP(unit, call)                                                                      \
  do {                                                                                             \
    if (!rc && (rc = (call)) != UOW_OK)                                                            \
      TORTURE_SAY(#call, uow_errmsg(unit));                                                        \
  } while (0)

/* `member` = uow_strdup(unit, s), or UOW_ENOMEM with the unit's message. */
#define UNIT_DUP(unit, member, s)                                                                  \
  do {                                                                                             \
    if (!rc && !((member) = uow_strdup(unit, s))) {                                                \
      rc = UOW_ENOMEM;                                                                             \
      TORTURE_SAY("uow_strdup", uow_errmsg(unit));                                                 \
    }                                                                                              \
  } while (0)

/* Open an environment with store "main" on `url` and the entities of
 * support.h mapped; with `schema`, create the schema and map the outbox
 * view too. Returns 0 or the failure's code, with its message in `msg`. */
int torture_open_env(const char *url, bool schema, uow_env **env, char *msg, size_t cap);

/* ---- checking: a unit's facts are all committed or all untouched ---- */

/* A fact about the stores: `all` matches `n_all` rows when the unit
 * committed; when it did not, `none` matches one row (or, NULL, `all`
 * matches none). */
typedef struct torture_fact {
  const char *table, *all;
  long n_all;
  const char *none;
} torture_fact;

enum { TORTURE_FACTS_MAX = 16 };

/* Read the facts on `url` (one query): *all when every one holds as
 * committed, *none when every one holds as untouched; `why` says which. */
void torture_read_facts(const char *url, const torture_fact *facts, size_t n, bool *all, bool *none,
                        char *why, size_t cap);
/* Whether a unit whose commit gave `rc` (TORTURE_NOT_REACHED: none) left its
 * facts as it must: 0 all, UOW_EINDOUBT either, anything else none. Says why
 * not on stderr. */
bool torture_unit_consistent(const char *what, int rc, bool all, bool none, const char *why);

/* Run statements (NULL-terminated list) on store "main" of `env`, in one
 * unit, with no failure armed; fails the test on error. Cheaper than
 * torture_exec() when the environment is at hand: no new connection. */
void torture_env_exec(uow_env *env, const char *sql, ...);

/* ---- direct access to a store by its libuow URL (sqlite:PATH or postgresql://...) ---- */

/* Run SQL (several statements allowed) outside libuow; fails the test on error. */
void torture_exec(const char *url, const char *sql);
/* The first column of the first row as text into buf ("" for SQL NULL);
 * false when there is no row. Fails the test on error. */
bool torture_text(const char *url, const char *sql, char *buf, size_t cap);
/* The first column of the first row as an integer (no row or NULL: the test fails). */
long long torture_int(const char *url, const char *sql);
/* PostgreSQL connections of the three above stay open for the next call
 * (torture_run closes them at its end); close them now, e.g. before a
 * server restart or a DROP DATABASE. */
void torture_disconnect(void);

#endif /* UOW_TEST_TORTURE_H */
