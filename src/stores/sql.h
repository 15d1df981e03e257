/*
 * sql.h - SQL text shared by the SQL stores (SQLite, PostgreSQL): DDL,
 * SELECT / INSERT / UPDATE / DELETE for an entity, the parameter order that
 * goes with them, and the `?` to `$n` rewrite. A dialect says how the two
 * databases differ; everything else is written once here.
 */
#ifndef UOW_SQL_H
#define UOW_SQL_H

#include "util/util.h"

typedef struct uow_sql_dialect {
  bool dollar_params;        /* $1, $2 … instead of ? */
  const char *int_type;      /* INTEGER / BIGINT */
  const char *double_type;   /* REAL / DOUBLE PRECISION */
  const char *blob_type;     /* BLOB / BYTEA */
  const char *bool_type;     /* INTEGER / BOOLEAN */
  const char *generated_key; /* column definition of a generated integer key */
  bool returning_generated;  /* INSERT … RETURNING the generated key */
} uow_sql_dialect;

/* Append "name" quoted as an identifier (names are checked at mapping). */
void uow__sql_ident(uow_buf *sql, const char *name);
/* CREATE TABLE IF NOT EXISTS for the entity. */
void uow__sql_create_table(uow_buf *sql, const uow_sql_dialect *d, const uow_entity *e);
/* SELECT every column FROM the table [WHERE where | WHERE key = ?] [FOR UPDATE]. */
void uow__sql_select(uow_buf *sql, const uow_sql_dialect *d, const uow_entity *e, const char *where,
                     bool by_key, bool for_update);
/* The statement for a write of this kind and column set (`rows` > 1: a multi-row INSERT). */
void uow__sql_write(uow_buf *sql, const uow_sql_dialect *d, const uow_write *w, size_t rows);
/* The parameters of one write in statement order; returns how many (at most ncolumns + 2). */
size_t uow__sql_write_params(const uow_write *w, uow_value *params);
/* Report an UPDATE or DELETE that matched no row as UOW_ECONFLICT, naming
 * the table, the key and the expected version; returns UOW_ECONFLICT. */
int uow__sql_stale_row(const uow_write *w, uow_status *st);
/* Copy `sql` replacing each ? outside quotes with $n (n from `first`); returns the count. */
size_t uow__sql_number_params(uow_buf *out, const char *sql, size_t first);

#endif /* UOW_SQL_H */
