/*
 * multistore.h - worlds of several stores for the coordinator and crash
 * tests: a SQLite file ("lite"), the test server's database uowtest ("pg1")
 * and a second database uowtest2 on the same server ("pg2").
 *
 * Each store has a table of its own (ms_a, ms_b, ms_c) with rows
 * (id, note); a numbered test unit writes row `n` to every store of the
 * topology and emits one event, so after any crash the oracle can tell, per
 * unit, whether it is in all its stores, in none, or torn.
 */
#ifndef UOW_TEST_MULTISTORE_H
#define UOW_TEST_MULTISTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uow.h"

typedef enum ms_topology {
  MS_SQLITE_PG,   /* lite + pg1: SQLite decides */
  MS_PG_PG,       /* pg1 + pg2: pg1 decides (the first added) */
  MS_SQLITE_PG_PG /* lite + pg1 + pg2: SQLite decides */
} ms_topology;

enum { MS_STORES_MAX = 3 };

typedef struct ms_row {
  int64_t id;
  char *note;
} ms_row;

typedef struct ms_world {
  ms_topology topology;
  size_t nstores;
  const char *names[MS_STORES_MAX];          /* store names, in the order added */
  const uow_entity *entities[MS_STORES_MAX]; /* the table of each */
  char urls[MS_STORES_MAX][2048];
  char dir[1024]; /* temporary directory of the SQLite file */
} ms_world;

/* Per-unit outcome counts from ms_verify(). */
typedef struct ms_counts {
  long complete;     /* in every store of the topology */
  long absent;       /* in none */
  long torn;         /* in some but not all: must be 0 */
  long lost;         /* acknowledged but absent: must be 0 */
  long acknowledged; /* commits that returned 0 */
} ms_counts;

/* A fresh world: tables dropped, the second database created, prepared
 * transactions and decision records of earlier tests removed. Fails the test
 * on error. Remove it with ms_cleanup(). */
void ms_prepare(ms_world *w, ms_topology topology);
void ms_cleanup(ms_world *w);
/* Open an environment on the world (decider_store may be NULL), map the
 * tables and create the schema. Fails the test on error. */
uow_env *ms_open(const ms_world *w, const char *decider_store);
/* The same without failing the test (for forked children): NULL on failure,
 * with the message on stderr; `schema` false skips creating tables. */
uow_env *ms_try_open(const ms_world *w, const char *decider_store, bool schema);
/* One unit: row n in every store, one event. Returns uow_commit()'s code (or
 * an earlier failure's); the unit is ended. */
int ms_unit(uow_env *env, const ms_world *w, int64_t n);
/* Which of units 1..max are in which stores; `acked[n]` says unit n was
 * acknowledged. Fills the counts. */
void ms_verify(const ms_world *w, const bool *acked, int64_t max, ms_counts *out);
/* Run SQL on a PostgreSQL URL (fails the test on error). */
void ms_pg_exec(const char *url, const char *sql);
/* Count of libuow's prepared transactions on the world's databases. */
long ms_prepared(const ms_world *w);
/* Count of rows in `table` of every SQL store of the world matching `where`. */
long ms_count_all(const ms_world *w, const char *table, const char *where);

#endif /* UOW_TEST_MULTISTORE_H */
