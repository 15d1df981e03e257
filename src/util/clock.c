/*
 * clock.c - wall-clock time in milliseconds, as the library's tables store it
 * (outbox created_at, decision records).
 */
#include <time.h>

#include "util/util.h"

int64_t uow__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
