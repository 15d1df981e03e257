/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: the entry point's
 * prototype, a NUL-terminated copy of the input (the parsers take C strings)
 * and a check that aborts, so that libFuzzer and the replay tests (replay.c)
 * report a broken property the way they report a crash.
 */
#ifndef UOW_TESTS_FUZZ_H
#define UOW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** A malloc'd NUL-terminated copy of the input (free it); an embedded NUL ends the string. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    abort();
  if (size)
    memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

/** Abort with a message when a property of the code under test does not hold. */
#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);                  \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#endif /* UOW_TESTS_FUZZ_H */
