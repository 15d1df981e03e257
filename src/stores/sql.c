/*
 * sql.c - SQL text for entities, shared by the SQL stores. Identifiers are
 * checked at mapping time and quoted here; values are never put in the text,
 * they are always bound in the order uow__sql_write_params() gives.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stores/sql.h"

void uow__sql_ident(uow_buf *sql, const char *name) {
  uow__buf_puts(sql, "\"");
  uow__buf_puts(sql, name);
  uow__buf_puts(sql, "\"");
}

static const uow_column *key_column(const uow_entity *e) {
  return &e->columns[uow__entity_key_index(e)];
}

static const uow_column *version_column(const uow_entity *e) {
  for (size_t i = 0; i < e->ncolumns; i++)
    if (e->columns[i].flags & UOW_VERSION)
      return &e->columns[i];
  return NULL;
}

static const char *type_name(const uow_sql_dialect *d, uow_type type) {
  switch (type) {
  case UOW_INT64:
    return d->int_type;
  case UOW_DOUBLE:
    return d->double_type;
  case UOW_TEXT:
    return "TEXT";
  case UOW_BLOB:
    return d->blob_type;
  case UOW_BOOL:
    return d->bool_type;
  }
  return "TEXT";
}

void uow__sql_create_table(uow_buf *sql, const uow_sql_dialect *d, const uow_entity *e) {
  uow__buf_puts(sql, "CREATE TABLE IF NOT EXISTS ");
  uow__sql_ident(sql, e->table);
  uow__buf_puts(sql, " (");
  for (size_t i = 0; i < e->ncolumns; i++) {
    const uow_column *c = &e->columns[i];
    if (i)
      uow__buf_puts(sql, ", ");
    uow__sql_ident(sql, c->name);
    if ((c->flags & UOW_PRIMARY_KEY) && (c->flags & UOW_GENERATED) && c->type == UOW_INT64) {
      uow__buf_printf(sql, " %s", d->generated_key);
      continue;
    }
    uow__buf_printf(sql, " %s", type_name(d, c->type));
    if (c->flags & UOW_PRIMARY_KEY)
      uow__buf_puts(sql, " PRIMARY KEY");
    else if (!(c->flags & UOW_NULLABLE))
      uow__buf_puts(sql, " NOT NULL");
    if (c->flags & UOW_UNIQUE)
      uow__buf_puts(sql, " UNIQUE");
    if (c->references) {
      uow__buf_puts(sql, " REFERENCES ");
      uow__sql_ident(sql, c->references->table);
      uow__buf_puts(sql, " (");
      uow__sql_ident(sql, key_column(c->references)->name);
      uow__buf_puts(sql, ")");
    }
  }
  uow__buf_puts(sql, ")");
}

/* The next placeholder: "?" or "$n". */
static void param(uow_buf *sql, const uow_sql_dialect *d, size_t *n) {
  ++*n;
  if (d->dollar_params)
    uow__buf_printf(sql, "$%zu", *n);
  else
    uow__buf_puts(sql, "?");
}

typedef enum item_kind { ITEM_NAME, ITEM_PARAM, ITEM_ASSIGN } item_kind;

/* The selected columns, comma-separated: "a", "b" / ?, ? / "a" = ?, "b" = ?. */
static void column_items(uow_buf *sql, const uow_sql_dialect *d, const uow_entity *e,
                         uint64_t columns, item_kind kind, size_t *n) {
  bool first = true;
  for (size_t i = 0; i < e->ncolumns; i++) {
    if (!(columns & (UINT64_C(1) << i)))
      continue;
    if (!first)
      uow__buf_puts(sql, ", ");
    first = false;
    if (kind != ITEM_PARAM)
      uow__sql_ident(sql, e->columns[i].name);
    if (kind == ITEM_ASSIGN)
      uow__buf_puts(sql, " = ");
    if (kind != ITEM_NAME)
      param(sql, d, n);
  }
}

static uint64_t all_columns(const uow_entity *e) {
  return e->ncolumns >= 64 ? UINT64_MAX : (UINT64_C(1) << e->ncolumns) - 1;
}

void uow__sql_select(uow_buf *sql, const uow_sql_dialect *d, const uow_entity *e, const char *where,
                     bool by_key, bool for_update) {
  uow__buf_puts(sql, "SELECT ");
  column_items(sql, d, e, all_columns(e), ITEM_NAME, NULL);
  uow__buf_puts(sql, " FROM ");
  uow__sql_ident(sql, e->table);
  if (by_key) {
    size_t n = 0;
    uow__buf_puts(sql, " WHERE ");
    uow__sql_ident(sql, key_column(e)->name);
    uow__buf_puts(sql, " = ");
    param(sql, d, &n);
  } else if (where && *where) {
    uow__buf_puts(sql, " WHERE ");
    if (d->dollar_params)
      uow__sql_number_params(sql, where, 1);
    else
      uow__buf_puts(sql, where);
  }
  if (for_update)
    uow__buf_puts(sql, " FOR UPDATE");
}

/* WHERE key = ? [AND version = ?] */
static void where_key(uow_buf *sql, const uow_sql_dialect *d, const uow_write *w, size_t *n) {
  uow__buf_puts(sql, " WHERE ");
  uow__sql_ident(sql, key_column(w->entity)->name);
  uow__buf_puts(sql, " = ");
  param(sql, d, n);
  const uow_column *version = version_column(w->entity);
  if (w->check_version && version) {
    uow__buf_puts(sql, " AND ");
    uow__sql_ident(sql, version->name);
    uow__buf_puts(sql, " = ");
    param(sql, d, n);
  }
}

void uow__sql_write(uow_buf *sql, const uow_sql_dialect *d, const uow_write *w, size_t rows) {
  const uow_entity *e = w->entity;
  size_t n = 0;
  switch (w->kind) {
  case UOW_WRITE_INSERT:
    uow__buf_puts(sql, "INSERT INTO ");
    uow__sql_ident(sql, e->table);
    uow__buf_puts(sql, " (");
    column_items(sql, d, e, w->columns, ITEM_NAME, NULL);
    uow__buf_puts(sql, ") VALUES ");
    for (size_t r = 0; r < rows; r++) {
      uow__buf_puts(sql, r ? ", (" : "(");
      column_items(sql, d, e, w->columns, ITEM_PARAM, &n);
      uow__buf_puts(sql, ")");
    }
    if (d->returning_generated && !(w->columns & (UINT64_C(1) << uow__entity_key_index(e)))) {
      uow__buf_puts(sql, " RETURNING ");
      uow__sql_ident(sql, key_column(e)->name);
    }
    break;
  case UOW_WRITE_UPDATE:
    uow__buf_puts(sql, "UPDATE ");
    uow__sql_ident(sql, e->table);
    uow__buf_puts(sql, " SET ");
    column_items(sql, d, e, w->columns, ITEM_ASSIGN, &n);
    where_key(sql, d, w, &n);
    break;
  case UOW_WRITE_DELETE:
    uow__buf_puts(sql, "DELETE FROM ");
    uow__sql_ident(sql, e->table);
    where_key(sql, d, w, &n);
    break;
  }
}

size_t uow__sql_write_params(const uow_write *w, uow_value *params) {
  size_t n = 0;
  if (w->kind != UOW_WRITE_DELETE)
    for (size_t i = 0; i < w->entity->ncolumns; i++)
      if (w->columns & (UINT64_C(1) << i))
        params[n++] = w->values[i];
  if (w->kind != UOW_WRITE_INSERT) {
    params[n++] = w->key;
    if (w->check_version && version_column(w->entity))
      params[n++] = uow_int64(w->expected);
  }
  return n;
}

size_t uow__sql_number_params(uow_buf *out, const char *sql, size_t first) {
  size_t n = first - 1;
  char quote = 0;
  for (const char *p = sql; *p; p++) {
    char c = *p;
    if (quote) {
      if (c == quote)
        quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '?') {
      uow__buf_printf(out, "$%zu", ++n);
      continue;
    }
    uow__buf_append(out, &c, 1);
  }
  return n - (first - 1);
}

/* A key for a message: numbers as they are, text quoted (and cut when long). */
static void describe_key(const uow_value *key, char *buf, size_t cap) {
  if (key->is_null) {
    snprintf(buf, cap, "NULL");
    return;
  }
  switch (key->type) {
  case UOW_INT64:
    snprintf(buf, cap, "%" PRId64, key->v.i);
    break;
  case UOW_DOUBLE:
    snprintf(buf, cap, "%g", key->v.d);
    break;
  case UOW_BOOL:
    snprintf(buf, cap, "%s", key->v.b ? "true" : "false");
    break;
  case UOW_TEXT: {
    size_t size = key->v.bytes.size;
    int shown = size > 100 ? 100 : (int)size;
    snprintf(buf, cap, "'%.*s'%s", shown, key->v.bytes.data ? (const char *)key->v.bytes.data : "",
             size > 100 ? "..." : "");
    break;
  }
  case UOW_BLOB:
    snprintf(buf, cap, "<%zu bytes>", key->v.bytes.size);
    break;
  }
}

/* An UPDATE or DELETE matched no row: someone else changed or deleted it. */
int uow__sql_stale_row(const uow_write *w, uow_status *st) {
  const uow_entity *entity = w->entity;
  const uow_column *version = version_column(entity);
  char key[128];
  char expected[96] = "";
  describe_key(&w->key, key, sizeof(key));
  if (w->check_version && version)
    snprintf(expected, sizeof(expected), " and %s = %" PRId64, version->name, w->expected);
  return uow_status_set(st, UOW_ECONFLICT,
                        "no row \"%s\" with %s = %s%s: changed or deleted by another unit",
                        entity->table, key_column(entity)->name, key, expected);
}
