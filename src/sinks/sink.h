/*
 * sink.h - what the built-in outbox sinks (redis_stream.c, command.c) share:
 * writing a message into the relay's error buffer and keeping SIGPIPE from
 * killing the process while they write to a peer that may have gone away.
 * Nothing here is part of the public API.
 */
#ifndef UOW_SINKS_SINK_H
#define UOW_SINKS_SINK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/util.h"

/* Append the JSON line of one event, newline included, as the command sink
 * writes it (command.c; the members and their encoding are described there).
 * Not static so that tests/fuzz/fuzz_outbox_record.c reaches the same code. */
void uow__sink_json_event(uow_buf *out, const uow_delivery *ev);

/* Format a message into `err` (capacity `errcap`; either may be 0/NULL) and return `code`. */
int uow__sink_fail(char *err, size_t errcap, int code, const char *fmt, ...) UOW_PRINTF(4, 5);

/*
 * SIGPIPE guard. Writing to a pipe or socket whose reader has gone raises
 * SIGPIPE, which kills the process by default, and a library must not change
 * the process's signal dispositions. So, the way libpq does it: block SIGPIPE
 * in the calling thread only, do the writes (they then fail with EPIPE, which
 * the caller handles), take back the SIGPIPE those writes left pending, and
 * restore the thread's mask. A SIGPIPE that was already pending beforehand is
 * left alone.
 */
typedef struct uow_sigpipe_guard {
  sigset_t old_mask; /* the thread's mask before uow__sigpipe_block() */
  bool was_pending;  /* SIGPIPE was pending before we blocked it */
  bool active;       /* the mask was changed and must be restored */
} uow_sigpipe_guard;

/* Block SIGPIPE in this thread. Never fails (the guard stays inactive if it cannot). */
void uow__sigpipe_block(uow_sigpipe_guard *guard);
/* Discard the SIGPIPE our writes raised, if any, and restore the thread's mask. */
void uow__sigpipe_restore(uow_sigpipe_guard *guard);

#endif /* UOW_SINKS_SINK_H */
