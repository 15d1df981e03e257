/*
 * clock.c - wall-clock time in milliseconds, as the library's tables store it
 * (outbox created_at, decision records), sleeping, and the jitter of retry
 * delays (uow_run, the relay).
 */
#include <time.h>

#include "util/util.h"

int64_t uow__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void uow__sleep_ms(int64_t ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

uint64_t uow__random_seed(const void *salt) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t seed = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ (uint64_t)(uintptr_t)salt;
  return seed ? seed : 0x2545f4914f6cdd1dull;
}

int64_t uow__jitter(int64_t backoff, uint64_t *seed) {
  *seed ^= *seed << 13; /* xorshift64 */
  *seed ^= *seed >> 7;
  *seed ^= *seed << 17;
  int64_t half = backoff / 2;
  return half + (int64_t)(*seed % (uint64_t)(backoff - half + 1));
}
