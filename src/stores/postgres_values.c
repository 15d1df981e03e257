/*
 * postgres_values.c - values between libuow and PostgreSQL's wire formats,
 * for the PostgreSQL store (postgres.c). Parameters go in binary where the
 * format is simple (int8, float8, bool, bytea) and as text otherwise. Results
 * come back in binary and are decoded into the uow_type a column declares,
 * whatever compatible type the table really has (int4, numeric, varchar,
 * jsonb ...); for a type whose binary form is not known here (timestamp,
 * uuid ...) the store asks for text results, which are parsed instead.
 * A value that does not fit the declared type is refused, never guessed.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/postgres_values.h"

/* Type OIDs, from pg_type.h (a server header that clients cannot include). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_NAME 19
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_OID 26
#define OID_JSON 114
#define OID_XML 142
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_UNKNOWN 705
#define OID_BPCHAR 1042
#define OID_VARCHAR 1043
#define OID_NUMERIC 1700
#define OID_JSONB 3802

/* Spelled out byte by byte: compilers turn this into one swap and one store. */
static void put_be64(unsigned char *p, uint64_t v) {
  p[0] = (unsigned char)(v >> 56);
  p[1] = (unsigned char)(v >> 48);
  p[2] = (unsigned char)(v >> 40);
  p[3] = (unsigned char)(v >> 32);
  p[4] = (unsigned char)(v >> 24);
  p[5] = (unsigned char)(v >> 16);
  p[6] = (unsigned char)(v >> 8);
  p[7] = (unsigned char)v;
}

static uint64_t get_be(const char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | (unsigned char)p[i];
  return v;
}

/* ---- parameters ---- */

int uow__pg_params_reserve(pg_params *p, size_t n) {
  if (n <= p->cap)
    return UOW_OK;
  size_t cap = p->cap ? p->cap : 16;
  while (cap < n)
    cap *= 2;
  /* Each array keeps its old contents if a later one cannot grow; cap moves
   * only when all did. */
  uow_value *values = uow__realloc(p->values, cap * sizeof(*values));
  if (values)
    p->values = values;
  const char **data = uow__realloc(p->data, cap * sizeof(*data));
  if (data)
    p->data = data;
  int *lengths = uow__realloc(p->lengths, cap * sizeof(*lengths));
  if (lengths)
    p->lengths = lengths;
  int *formats = uow__realloc(p->formats, cap * sizeof(*formats));
  if (formats)
    p->formats = formats;
  Oid *oids = uow__realloc(p->oids, cap * sizeof(*oids));
  if (oids)
    p->oids = oids;
  if (!values || !data || !lengths || !formats || !oids)
    return UOW_ENOMEM;
  p->cap = cap;
  return UOW_OK;
}

void uow__pg_params_free(pg_params *p) {
  uow__free(p->values);
  uow__free(p->data);
  uow__free(p->lengths);
  uow__free(p->formats);
  uow__free(p->oids);
  uow__free(p->bytes);
  memset(p, 0, sizeof(*p));
}

/* Text goes as untyped text (OID 0) so that the server reads it as whatever
 * the context wants (varchar, jsonb, timestamp ...). A NULL in an entity
 * statement keeps its column's type, so that the statement's shape does not
 * depend on which values are NULL; in a caller's SQL it is untyped. */
static Oid value_oid(const uow_value *v, bool typed_nulls) {
  if (v->is_null && !typed_nulls)
    return 0;
  switch (v->type) {
  case UOW_INT64:
    return OID_INT8;
  case UOW_DOUBLE:
    return OID_FLOAT8;
  case UOW_BOOL:
    return OID_BOOL;
  case UOW_BLOB:
    return OID_BYTEA;
  case UOW_TEXT:
    break;
  }
  return 0;
}

/* Bytes a value takes in pg_params.bytes (a blob is sent from where it is). */
static size_t value_room(const uow_value *v) {
  if (v->is_null)
    return 0;
  switch (v->type) {
  case UOW_INT64:
  case UOW_DOUBLE:
    return 8;
  case UOW_BOOL:
    return 1;
  case UOW_TEXT:
    return v->v.bytes.size + 1;
  case UOW_BLOB:
    break;
  }
  return 0;
}

/* Room for `size` bytes of values; the old contents need not survive. */
static int reserve_bytes(pg_params *p, size_t size) {
  if (size <= p->bytes_cap)
    return UOW_OK;
  size_t cap = p->bytes_cap ? p->bytes_cap : 256;
  while (cap < size)
    cap *= 2;
  char *bytes = uow__realloc(p->bytes, cap);
  if (!bytes)
    return UOW_ENOMEM;
  p->bytes = bytes;
  p->bytes_cap = cap;
  return UOW_OK;
}

/* Measure first, so that the bytes are allocated once and every value is
 * written straight into its place: a 100-row INSERT has hundreds of them. */
int uow__pg_params_encode(pg_params *p, const uow_value *v, size_t n, bool typed_nulls) {
  size_t room = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i].is_null)
      continue;
    if (v[i].type < UOW_INT64 || v[i].type > UOW_BOOL ||
        ((v[i].type == UOW_TEXT || v[i].type == UOW_BLOB) &&
         (v[i].v.bytes.size > INT_MAX || (!v[i].v.bytes.data && v[i].v.bytes.size))) ||
        (v[i].type == UOW_TEXT && v[i].v.bytes.size &&
         memchr(v[i].v.bytes.data, '\0', v[i].v.bytes.size)))
      return UOW_EINVAL;
    room += value_room(&v[i]);
  }
  if (reserve_bytes(p, room + 1) != UOW_OK) /* + 1: never a NULL buffer */
    return UOW_ENOMEM;
  char *at = p->bytes;
  for (size_t i = 0; i < n; i++) {
    const uow_value *value = &v[i];
    uint64_t bits;
    p->oids[i] = value_oid(value, typed_nulls);
    p->formats[i] = value->type == UOW_TEXT ? 0 : 1;
    p->lengths[i] = 0;
    p->data[i] = NULL;
    if (value->is_null)
      continue;
    switch (value->type) {
    case UOW_INT64:
    case UOW_DOUBLE:
      if (value->type == UOW_INT64)
        bits = (uint64_t)value->v.i;
      else
        memcpy(&bits, &value->v.d, sizeof(bits));
      put_be64((unsigned char *)at, bits);
      p->lengths[i] = 8;
      break;
    case UOW_BOOL:
      at[0] = value->v.b ? 1 : 0;
      p->lengths[i] = 1;
      break;
    case UOW_TEXT:
      if (value->v.bytes.size)
        memcpy(at, value->v.bytes.data, value->v.bytes.size);
      at[value->v.bytes.size] = '\0'; /* text format wants a terminator */
      p->lengths[i] = (int)value->v.bytes.size;
      break;
    case UOW_BLOB: /* sent from where it is */
      p->data[i] = value->v.bytes.data ? value->v.bytes.data : "";
      p->lengths[i] = (int)value->v.bytes.size;
      continue;
    }
    p->data[i] = at;
    at += value_room(value);
  }
  return UOW_OK;
}

/* ---- reading values ---- */

/* A result field as the server sent it, before it becomes a column's type. */
typedef struct pg_field {
  enum { FIELD_INT, FIELD_FLOAT, FIELD_BOOL, FIELD_BYTES } shape;
  int64_t i;
  double d;
  bool b;
  const char *p;  /* FIELD_BYTES: NUL-terminated at p[n] (libpq and uow_buf both add one) */
  size_t n;       /* FIELD_BYTES */
  size_t made_at; /* FIELD_BYTES made in the scratch buffer: its offset, else SIZE_MAX */
} pg_field;

/* Binary numeric (base-10000 digits) as decimal text appended to `out`. */
static int numeric_text(const char *p, int len, uow_buf *out) {
  if (len < 8)
    return UOW_EINVAL;
  int ndigits = (int)get_be(p, 2);
  int weight = (int16_t)get_be(p + 2, 2);
  unsigned sign = (unsigned)get_be(p + 4, 2);
  int dscale = (int)get_be(p + 6, 2);
  if (len != 8 + 2 * ndigits)
    return UOW_EINVAL;
  if (sign == 0xC000 || sign == 0xD000 || sign == 0xF000) {
    uow__buf_puts(out, sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity" : "-Infinity");
    return UOW_OK;
  }
  if (sign == 0x4000)
    uow__buf_puts(out, "-");
  if (weight < 0)
    uow__buf_puts(out, "0");
  for (int k = 0; k <= weight; k++) {
    int d = k < ndigits ? (int)get_be(p + 8 + 2 * k, 2) : 0;
    uow__buf_printf(out, k ? "%04d" : "%d", d);
  }
  if (dscale > 0) {
    uow__buf_puts(out, ".");
    size_t start = out->len;
    for (int j = 1; (j - 1) * 4 < dscale; j++) {
      int k = weight + j;
      int d = k >= 0 && k < ndigits ? (int)get_be(p + 8 + 2 * k, 2) : 0;
      uow__buf_printf(out, "%04d", d);
    }
    if (!out->failed) {
      out->len = start + (size_t)dscale;
      out->data[out->len] = '\0';
    }
  }
  return uow__buf_status(out);
}

static bool is_textual(Oid type) {
  return type == OID_TEXT || type == OID_VARCHAR || type == OID_BPCHAR || type == OID_NAME ||
         type == OID_UNKNOWN || type == OID_JSON || type == OID_XML || type == OID_BYTEA;
}

bool uow__pg_binary_known(Oid type) {
  return type == OID_INT8 || type == OID_INT4 || type == OID_INT2 || type == OID_OID ||
         type == OID_FLOAT8 || type == OID_FLOAT4 || type == OID_BOOL || is_textual(type) ||
         type == OID_JSONB || type == OID_NUMERIC;
}

/* A text-format bytea ("\x0102ff", the default bytea_output) as its bytes. */
static int bytea_text(const char *p, int len, uow_buf *out) {
  if (len < 2 || p[0] != '\\' || p[1] != 'x' || len % 2 != 0)
    return UOW_EINVAL;
  for (int i = 2; i < len; i += 2) {
    int hi = uow__hex_digit(p[i]), lo = uow__hex_digit(p[i + 1]);
    if (hi < 0 || lo < 0)
      return UOW_EINVAL;
    unsigned char byte = (unsigned char)(hi << 4 | lo);
    uow__buf_append(out, &byte, 1);
  }
  return uow__buf_status(out);
}

/* A field of a text-format result: the text itself, bytea decoded. */
static int field_read_text(const char *p, int len, Oid type, uow_buf *scratch, pg_field *f) {
  f->shape = FIELD_BYTES;
  f->p = p;
  f->n = (size_t)len;
  if (type != OID_BYTEA)
    return UOW_OK;
  f->made_at = scratch->len;
  int rc = bytea_text(p, len, scratch);
  uow__buf_append(scratch, "", 1);
  if (rc != UOW_OK || uow__buf_status(scratch) != UOW_OK)
    return rc != UOW_OK ? rc : UOW_ENOMEM;
  f->p = scratch->data + f->made_at;
  f->n = scratch->len - f->made_at - 1;
  return UOW_OK;
}

static int field_read(const PGresult *res, int row, int col, uow_buf *scratch, pg_field *f) {
  Oid type = PQftype(res, col);
  const char *p = PQgetvalue(res, row, col);
  int len = PQgetlength(res, row, col);
  memset(f, 0, sizeof(*f));
  f->made_at = SIZE_MAX;
  if (PQfformat(res, col) == 0)
    return field_read_text(p, len, type, scratch, f);
  if ((type == OID_INT8 && len == 8) || (type == OID_INT4 && len == 4) ||
      (type == OID_INT2 && len == 2)) {
    f->shape = FIELD_INT;
    uint64_t bits = get_be(p, len) << (64 - 8 * len);
    f->i = (int64_t)bits >> (64 - 8 * len); /* sign-extend */
  } else if (type == OID_OID && len == 4) {
    f->shape = FIELD_INT;
    f->i = (int64_t)get_be(p, 4);
  } else if ((type == OID_FLOAT8 && len == 8) || (type == OID_FLOAT4 && len == 4)) {
    f->shape = FIELD_FLOAT;
    uint64_t bits = get_be(p, len);
    if (len == 8) {
      memcpy(&f->d, &bits, sizeof(f->d));
    } else {
      uint32_t bits32 = (uint32_t)bits;
      float x;
      memcpy(&x, &bits32, sizeof(x));
      f->d = x;
    }
  } else if (type == OID_BOOL && len == 1) {
    f->shape = FIELD_BOOL;
    f->b = p[0] != 0;
  } else if (is_textual(type) || (type == OID_JSONB && len >= 1 && p[0] == 1)) {
    f->shape = FIELD_BYTES;
    f->p = type == OID_JSONB ? p + 1 : p; /* binary jsonb is a version byte, then text */
    f->n = (size_t)len - (type == OID_JSONB ? 1 : 0);
  } else if (type == OID_NUMERIC) {
    f->shape = FIELD_BYTES;
    f->made_at = scratch->len;
    int rc = numeric_text(p, len, scratch);
    uow__buf_append(scratch, "", 1);
    if (rc != UOW_OK || uow__buf_status(scratch) != UOW_OK)
      return rc != UOW_OK ? rc : UOW_ENOMEM;
    f->p = scratch->data + f->made_at;
    f->n = scratch->len - f->made_at - 1;
  } else {
    return UOW_EINVAL;
  }
  return UOW_OK;
}

/* "42", "-7", also "12.000" from a numeric; surrounding blanks from char(n). */
static bool parse_int(const char *p, size_t n, int64_t *out) {
  size_t i = 0;
  while (i < n && p[i] == ' ')
    i++;
  bool neg = i < n && p[i] == '-';
  if (i < n && (p[i] == '-' || p[i] == '+'))
    i++;
  uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  size_t digits = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
    uint64_t d = (uint64_t)(p[i] - '0');
    if (v > (limit - d) / 10)
      return false;
    v = v * 10 + d;
  }
  if (i < n && p[i] == '.')
    for (i++; i < n && p[i] == '0'; i++)
      ;
  while (i < n && p[i] == ' ')
    i++;
  if (!digits || i != n)
    return false;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

static bool parse_double(const char *p, size_t n, double *out) {
  char *end;
  *out = strtod(p, &end); /* p[n] is a NUL */
  while (end < p + n && *end == ' ')
    end++;
  return n && end == p + n;
}

static bool parse_bool(const char *p, size_t n, bool *out) {
  static const char *const yes[] = {"t", "true", "1", "y", "yes", "on"};
  static const char *const no[] = {"f", "false", "0", "n", "no", "off"};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    if (strlen(yes[i]) == n && strncmp(p, yes[i], n) == 0)
      return (*out = true);
    if (strlen(no[i]) == n && strncmp(p, no[i], n) == 0)
      return !(*out = false);
  }
  return false;
}

static bool field_int(const pg_field *f, int64_t *out) {
  switch (f->shape) {
  case FIELD_INT:
    *out = f->i;
    return true;
  case FIELD_FLOAT:
    if (!(f->d >= -9.2e18 && f->d <= 9.2e18) || f->d != (double)(int64_t)f->d)
      return false;
    *out = (int64_t)f->d;
    return true;
  case FIELD_BOOL:
    *out = f->b;
    return true;
  case FIELD_BYTES:
    break;
  }
  return parse_int(f->p, f->n, out);
}

static bool field_double(const pg_field *f, double *out) {
  switch (f->shape) {
  case FIELD_INT:
    *out = (double)f->i;
    return true;
  case FIELD_FLOAT:
    *out = f->d;
    return true;
  case FIELD_BOOL:
    return false;
  case FIELD_BYTES:
    break;
  }
  return parse_double(f->p, f->n, out);
}

static bool field_bool(const pg_field *f, bool *out) {
  switch (f->shape) {
  case FIELD_INT:
    *out = f->i != 0;
    return true;
  case FIELD_BOOL:
    *out = f->b;
    return true;
  case FIELD_FLOAT:
    return false;
  case FIELD_BYTES:
    break;
  }
  return parse_bool(f->p, f->n, out);
}

/* Text or bytes. Numbers asked for as text are written into the scratch
 * buffer; `*made_at` tells the caller to point at them once the row is done
 * (the buffer may still move). */
static bool field_bytes(const pg_field *f, uow_type type, uow_buf *scratch, uow_value *out,
                        size_t *made_at) {
  char text[40];
  switch (f->shape) {
  case FIELD_BYTES:
    out->v.bytes.data = f->p;
    out->v.bytes.size = f->n;
    *made_at = f->made_at;
    return true;
  case FIELD_INT:
    snprintf(text, sizeof(text), "%" PRId64, f->i);
    break;
  case FIELD_FLOAT:
    snprintf(text, sizeof(text), "%.17g", f->d);
    break;
  case FIELD_BOOL:
    snprintf(text, sizeof(text), "%s", f->b ? "true" : "false");
    break;
  }
  if (type == UOW_BLOB)
    return false;
  *made_at = scratch->len;
  out->v.bytes.size = strlen(text);
  uow__buf_append(scratch, text, out->v.bytes.size + 1);
  return true;
}

int uow__pg_decode(const PGresult *res, int row, int col, uow_type type, uow_buf *scratch,
                   uow_value *out, size_t *made_at) {
  memset(out, 0, sizeof(*out));
  out->type = type;
  *made_at = SIZE_MAX;
  if (PQgetisnull(res, row, col)) {
    out->is_null = true;
    return UOW_OK;
  }
  pg_field f;
  int rc = field_read(res, row, col, scratch, &f);
  if (rc != UOW_OK)
    return rc;
  bool ok = false;
  switch (type) {
  case UOW_INT64:
    ok = field_int(&f, &out->v.i);
    break;
  case UOW_DOUBLE:
    ok = field_double(&f, &out->v.d);
    break;
  case UOW_BOOL:
    ok = field_bool(&f, &out->v.b);
    break;
  case UOW_TEXT:
  case UOW_BLOB:
    ok = field_bytes(&f, type, scratch, out, made_at);
    break;
  }
  if (uow__buf_status(scratch) != UOW_OK)
    return UOW_ENOMEM;
  return ok ? UOW_OK : UOW_EINVAL;
}
