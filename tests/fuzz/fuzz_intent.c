/*
 * fuzz_intent.c - uow__intent_decode (src/core/intent.c), the reader of
 * intent rows in the outbox (their payload format is described at the top of
 * intent.c), and uow__intent_encode on what it decoded: an input that decodes
 * must encode again, decode to the same intent, and (unless a string held a
 * NUL, which the C strings of uow_intent cannot keep) give back its bytes.
 */
#include <stdbool.h>

#include "core/core.h"
#include "fuzz.h"

static void check_same_intent(const uow_intent *a, const uow_intent *b) {
  FUZZ_CHECK(strcmp(a->table, b->table) == 0);
  FUZZ_CHECK(strcmp(a->key, b->key) == 0);
  FUZZ_CHECK(a->version == b->version && a->del == b->del);
  FUZZ_CHECK(a->nfields == b->nfields);
  for (size_t i = 0; i < a->nfields; i++) {
    const uow_intent_field *f = &a->fields[i], *g = &b->fields[i];
    FUZZ_CHECK(strcmp(f->name, g->name) == 0);
    FUZZ_CHECK(!f->value == !g->value);
    if (f->value) {
      FUZZ_CHECK(f->len == g->len);
      FUZZ_CHECK(f->len == 0 || memcmp(f->value, g->value, f->len) == 0);
      /* Values are NUL-terminated copies, so text can be used as a string. */
      FUZZ_CHECK(((const char *)f->value)[f->len] == '\0');
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uow_arena arena;
  uow__arena_init(&arena);
  uow_intent intent;
  int rc = uow__intent_decode(data, size, &arena, &intent);
  FUZZ_CHECK(rc == 0 || rc == UOW_EINVAL || rc == UOW_ENOMEM);
  if (rc == 0) {
    FUZZ_CHECK(intent.table && intent.key);
    FUZZ_CHECK(!intent.del || intent.nfields == 0);
    FUZZ_CHECK(!intent.nfields || intent.fields);

    uow_buf payload;
    uow__buf_init(&payload);
    rc = uow__intent_encode(&intent, &payload);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(payload.len <= size);
    if (payload.len == size)
      FUZZ_CHECK(memcmp(payload.data, data, size) == 0);

    uow_intent again;
    rc = uow__intent_decode(payload.data, payload.len, &arena, &again);
    FUZZ_CHECK(rc == 0);
    check_same_intent(&intent, &again);
    uow__buf_free(&payload);
  }
  uow__arena_free(&arena);
  return 0;
}
