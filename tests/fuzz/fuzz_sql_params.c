/*
 * fuzz_sql_params.c - uow__sql_number_params (src/stores/sql.c), which
 * rewrites each `?` outside quotes as $n for PostgreSQL. The first byte picks
 * the first number (1..256), the rest is the SQL text. Checks: every `?` is
 * either rewritten or kept, never lost or invented; the numbers run from
 * `first` without a gap; the rewrite does not depend on `first` otherwise.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "stores/sql.h"

static size_t count_char(const char *s, size_t len, char c) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += s[i] == c;
  return n;
}

/**
 * Whether `out` is `sql` with some of its '?' replaced by $first, $first+1, ...
 * in order, `holes` of them, and nothing else changed.
 */
static bool is_numbered_copy(const char *sql, size_t sql_len, const uow_buf *out, size_t first,
                             size_t holes) {
  size_t i = 0, next = first;
  for (size_t k = 0; k < sql_len; k++) {
    if (sql[k] == '?' && i < out->len && out->data[i] == '$') {
      char num[32];
      int w = snprintf(num, sizeof(num), "$%zu", next);
      if (out->len - i < (size_t)w || memcmp(out->data + i, num, (size_t)w) != 0)
        return false;
      i += (size_t)w;
      next++;
      continue;
    }
    if (i >= out->len || out->data[i] != sql[k])
      return false;
    i++;
  }
  return i == out->len && next == first + holes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t first = 1 + (size_t)data[0];
  char *sql = fuzz_cstring(data + 1, size - 1);
  size_t sql_len = strlen(sql);

  uow_buf out, other;
  uow__buf_init(&out);
  uow__buf_init(&other);
  size_t holes = uow__sql_number_params(&out, sql, first);
  size_t holes1 = uow__sql_number_params(&other, sql, 1);
  FUZZ_CHECK(uow__buf_status(&out) == 0 && uow__buf_status(&other) == 0);
  FUZZ_CHECK(holes == holes1);
  FUZZ_CHECK(holes <= count_char(sql, sql_len, '?'));
  /* Without quotes every '?' is a parameter. */
  if (!strpbrk(sql, "'\""))
    FUZZ_CHECK(holes == count_char(sql, sql_len, '?'));
  if (holes == 0) {
    FUZZ_CHECK(out.len == sql_len && (sql_len == 0 || memcmp(out.data, sql, sql_len) == 0));
  } else {
    FUZZ_CHECK(out.data && memchr(out.data, '\0', out.len) == NULL);
    /* Kept '?' + rewritten ones = the input's. */
    FUZZ_CHECK(count_char(out.data, out.len, '?') + holes == count_char(sql, sql_len, '?'));
    FUZZ_CHECK(is_numbered_copy(sql, sql_len, &out, first, holes));
  }
  uow__buf_free(&out);
  uow__buf_free(&other);
  free(sql);
  return 0;
}
