/*
 * postgres_values.h - between uow_value and the PostgreSQL wire formats, for
 * postgres.c: parameters laid out for libpq (binary for numbers, booleans and
 * bytes, text for text) and result fields decoded into a column's uow_type.
 * Internal to the PostgreSQL store.
 */
#ifndef UOW_POSTGRES_VALUES_H
#define UOW_POSTGRES_VALUES_H

#include <libpq-fe.h>

#include "util/util.h"

/* One statement's parameters as libpq takes them; reused between statements
 * since libpq copies them when the statement is queued. */
typedef struct pg_params {
  uow_value *values; /* statement order, for callers that build them here */
  const char **data;
  int *lengths;
  int *formats;
  Oid *oids;
  size_t cap;
  char *bytes; /* binary numbers and NUL-terminated copies of text */
  size_t bytes_cap;
} pg_params;

/* Room for `n` parameters. 0 or UOW_ENOMEM (then the arrays are unchanged). */
int uow__pg_params_reserve(pg_params *p, size_t n);
void uow__pg_params_free(pg_params *p);
/* Lay out `n` values (n <= p->cap). `typed_nulls`: a NULL keeps its value's
 * type (entity statements) instead of being untyped (a caller's SQL).
 * 0, UOW_EINVAL (see UOW__PG_BAD_VALUE) or UOW_ENOMEM. */
int uow__pg_params_encode(pg_params *p, const uow_value *v, size_t n, bool typed_nulls);
/* What UOW_EINVAL from uow__pg_params_encode means, for messages. Text goes in
 * text format, which ends at a NUL: one inside would cut the value short. */
#define UOW__PG_BAD_VALUE                                                                          \
  "a value is over 2 GiB, of no known type, without data for its size, or text with a NUL byte"

/* True when results of `type` can be decoded from the binary format. For
 * other types (timestamp, uuid ...) the store asks for text results, which
 * uow__pg_decode() parses as the column's type. */
bool uow__pg_binary_known(Oid type);

/* Decode field (row, col) of a binary- or text-format result as `type` into `out`.
 * Text is not copied: it points into `res`, or, when made here (numbers read
 * as text, numeric), into `scratch`, whose offset goes to `*made_at` (else
 * SIZE_MAX) because the buffer may move until the row is finished.
 * 0, UOW_EINVAL (a type that cannot become `type`) or UOW_ENOMEM. */
int uow__pg_decode(const PGresult *res, int row, int col, uow_type type, uow_buf *scratch,
                   uow_value *out, size_t *made_at);

#endif /* UOW_POSTGRES_VALUES_H */
