/*
 * sink.c - the parts of the outbox sinks that are not one sink's own:
 * uow_sink_close(), error messages, and the SIGPIPE guard that both the Redis
 * stream sink (hiredis writes to its socket with plain write()) and the
 * command sink (writes to the command's stdin) need.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sinks/sink.h"

void uow_sink_close(uow_sink *sink) {
  if (!sink)
    return;
  if (sink->destroy)
    sink->destroy(sink->ctx);
  memset(sink, 0, sizeof(*sink));
}

int uow__sink_fail(char *err, size_t errcap, int code, const char *fmt, ...) {
  if (err && errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
  }
  return code;
}

void uow__sigpipe_block(uow_sigpipe_guard *guard) {
  sigset_t pipe_set, pending;
  guard->active = false;
  guard->was_pending = false;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  if (sigpending(&pending) == 0)
    guard->was_pending = sigismember(&pending, SIGPIPE) == 1;
  if (pthread_sigmask(SIG_BLOCK, &pipe_set, &guard->old_mask) == 0)
    guard->active = true;
}

void uow__sigpipe_restore(uow_sigpipe_guard *guard) {
  if (!guard->active)
    return;
  /* A SIGPIPE that was pending before belongs to someone else: keep it. */
  if (!guard->was_pending) {
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const struct timespec now = {0, 0};
      int rc;
      do
        rc = sigtimedwait(&pipe_set, NULL, &now);
      while (rc < 0 && errno == EINTR);
    }
  }
  pthread_sigmask(SIG_SETMASK, &guard->old_mask, NULL);
  guard->active = false;
}
