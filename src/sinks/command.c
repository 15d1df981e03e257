/*
 * command.c - the command sink (uow_sink_command): for each batch the relay
 * hands it, run `/bin/sh -c COMMAND` and write one JSON object per event to
 * its standard input, one per line, in the order and with the members that
 * uow.h documents. The batch counts as delivered when the command exits with
 * status 0; otherwise nothing of it does (UOW_EIO) and the relay retries it.
 *
 * Choices worth knowing:
 *  - The JSON lines of a whole batch are built before the command starts, so
 *    running out of memory never leaves a command with half a batch.
 *  - Text members (event_id, topic, key, unit_id) are C strings; bytes in them
 *    that are not valid UTF-8 are written as U+FFFD so that every line is
 *    valid JSON. A NULL key is written as null.
 *  - The payload is a JSON string when it is valid UTF-8 (RFC 3629: no
 *    overlong forms, no surrogates, nothing above U+10FFFF; NUL bytes are
 *    valid and written as \u0000), else standard base64 with padding and
 *    "payload_encoding":"base64".
 *  - SIGPIPE: a command may exit, or close its stdin, without reading
 *    everything (`true`). The writes then run with SIGPIPE blocked in this
 *    thread (see sink.h), fail with EPIPE, and the exit status decides alone,
 *    as documented: `true` delivers the batch, `exit 3` does not.
 *  - The command starts with an empty signal mask and SIGPIPE at its default
 *    action, whatever the relay thread has blocked or the process ignores;
 *    it inherits stdout and stderr, and no other descriptor of ours.
 *  - There is no timeout: a command that neither reads nor exits blocks the
 *    relay. A process that sets SIGCHLD to SIG_IGN gets UOW_EIO (the exit
 *    status is lost).
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pipe2(): both ends close-on-exec atomically */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sinks/sink.h"

extern char **environ;

/** Longest part of the command quoted in messages (its first word). */
#define COMMAND_NAME_MAX 48

typedef struct command_sink {
  char *command;                   /* as given; run by /bin/sh -c */
  char name[COMMAND_NAME_MAX + 4]; /* its first word, for messages */
} command_sink;

/* ---- JSON ---- */

/**
 * Length of the valid UTF-8 sequence at `s` (at most `len` bytes long), or 0
 * when it is not one: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate (U+D800..U+DFFF) or a code point past U+10FFFF.
 */
static size_t utf8_sequence(const unsigned char *s, size_t len) {
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0)
      lo = 0xA0; /* overlong */
    else if (c == 0xED)
      hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0)
      lo = 0x90; /* overlong */
    else if (c == 0xF4)
      hi = 0x8F; /* past U+10FFFF */
  } else {
    return 0; /* continuation byte, C0/C1 (overlong), F5..FF */
  }
  if (len < need || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < need; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return need;
}

static bool utf8_valid(const unsigned char *s, size_t len) {
  for (size_t i = 0; i < len;) {
    size_t step = utf8_sequence(s + i, len - i);
    if (!step)
      return false;
    i += step;
  }
  return true;
}

/**
 * Append `len` bytes as a quoted JSON string: quote, backslash and every
 * control character (U+0000..U+001F and DEL) escaped, valid UTF-8 copied as
 * is, and every byte that does not start a valid sequence written as U+FFFD.
 */
static void json_string(uow_buf *out, const void *data, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = data;
  uow__buf_append(out, "\"", 1);
  size_t run = 0; /* start of the bytes copied verbatim */
  for (size_t i = 0; i < len;) {
    unsigned char c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7F) {
      i++;
      continue;
    }
    size_t step = c < 0x80 ? 1 : utf8_sequence(s + i, len - i);
    if (step > 1) {
      i += step;
      continue;
    }
    uow__buf_append(out, s + run, i - run);
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
    switch (c) {
    case '"':
      uow__buf_append(out, "\\\"", 2);
      break;
    case '\\':
      uow__buf_append(out, "\\\\", 2);
      break;
    case '\b':
      uow__buf_append(out, "\\b", 2);
      break;
    case '\f':
      uow__buf_append(out, "\\f", 2);
      break;
    case '\n':
      uow__buf_append(out, "\\n", 2);
      break;
    case '\r':
      uow__buf_append(out, "\\r", 2);
      break;
    case '\t':
      uow__buf_append(out, "\\t", 2);
      break;
    default:
      if (c < 0x80)
        uow__buf_append(out, esc, sizeof(esc));
      else
        uow__buf_append(out, "\\ufffd", 6); /* not UTF-8 */
      break;
    }
    i++;
    run = i;
  }
  uow__buf_append(out, s + run, len - run);
  uow__buf_append(out, "\"", 1);
}

static void json_text(uow_buf *out, const char *text) {
  if (text)
    json_string(out, text, strlen(text));
  else
    uow__buf_append(out, "null", 4);
}

/** Append `len` bytes as a quoted string of standard base64 (RFC 4648, padded). */
static void json_base64(uow_buf *out, const unsigned char *s, size_t len) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char chunk[256];
  size_t used = 0;
  uow__buf_append(out, "\"", 1);
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)s[i + 1] << 8;
    if (i + 2 < len)
      v |= s[i + 2];
    chunk[used++] = alphabet[(v >> 18) & 63];
    chunk[used++] = alphabet[(v >> 12) & 63];
    chunk[used++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    chunk[used++] = i + 2 < len ? alphabet[v & 63] : '=';
    if (used + 4 > sizeof(chunk)) {
      uow__buf_append(out, chunk, used);
      used = 0;
    }
  }
  uow__buf_append(out, chunk, used);
  uow__buf_append(out, "\"", 1);
}

/* See sink.h. */
void uow__sink_json_event(uow_buf *out, const uow_delivery *ev) {
  uow__buf_puts(out, "{\"event_id\":");
  json_text(out, ev->event_id);
  uow__buf_puts(out, ",\"topic\":");
  json_text(out, ev->topic);
  uow__buf_puts(out, ",\"key\":");
  json_text(out, ev->key);
  uow__buf_puts(out, ",\"unit_id\":");
  json_text(out, ev->unit_id);
  uow__buf_printf(out, ",\"seq\":%" PRId64 ",\"created_at\":%" PRId64 ",\"attempt\":%" PRId64,
                  ev->seq, ev->created_at, ev->attempt);
  uow__buf_puts(out, ",\"payload\":");
  const unsigned char *payload = ev->payload ? ev->payload : (const unsigned char *)"";
  if (utf8_valid(payload, ev->payload_len)) {
    json_string(out, payload, ev->payload_len);
    uow__buf_puts(out, ",\"payload_encoding\":\"utf8\"}\n");
  } else {
    json_base64(out, payload, ev->payload_len);
    uow__buf_puts(out, ",\"payload_encoding\":\"base64\"}\n");
  }
}

/* ---- running the command ---- */

/** Make `*fd` close-on-exec and at least 3, so it can be neither stdin nor dup2's target. */
static int fd_above_stdio(int *fd) {
  if (*fd > 2)
    return fcntl(*fd, F_SETFD, FD_CLOEXEC);
  int moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
  if (moved < 0)
    return -1;
  close(*fd);
  *fd = moved;
  return 0;
}

static int make_pipe(int fds[2]) {
#if defined(__linux__)
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
#else
  if (pipe(fds) != 0)
    return -1;
#endif
  if (fd_above_stdio(&fds[0]) != 0 || fd_above_stdio(&fds[1]) != 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  return 0;
}

/**
 * Start `/bin/sh -c command` reading from `stdin_fd`, with an empty signal
 * mask and SIGPIPE at its default action. Returns 0 or an errno value.
 */
static int spawn_shell(const char *command, int stdin_fd, pid_t *pid) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t empty, pipe_set;
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc)
    return rc;
  rc = posix_spawnattr_init(&attr);
  if (rc) {
    posix_spawn_file_actions_destroy(&actions);
    return rc;
  }
  sigemptyset(&empty);
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  /* Both pipe ends are close-on-exec; dup2 gives the command its stdin without it. */
  if (!(rc = posix_spawn_file_actions_adddup2(&actions, stdin_fd, STDIN_FILENO)) &&
      !(rc = posix_spawnattr_setsigmask(&attr, &empty)) &&
      !(rc = posix_spawnattr_setsigdefault(&attr, &pipe_set)) &&
      !(rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))) {
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    rc = posix_spawn(pid, "/bin/sh", &actions, &attr, argv, environ);
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

/**
 * Write all of `data` to `fd`. Returns 0, or the errno of the write that
 * failed (EPIPE when the command stopped reading).
 */
static int write_all(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int command_deliver(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                           char *err, size_t errcap) {
  command_sink *sink = ctx;
  uow_buf lines;
  int fds[2], rc;
  pid_t pid;

  if (delivered)
    *delivered = 0;
  if (!sink || !delivered || (n && !events))
    return uow__sink_fail(err, errcap, UOW_EINVAL, "command sink: NULL argument");
  if (n == 0)
    return 0; /* no batch, no run */
  for (size_t i = 0; i < n; i++)
    if (!events[i].payload && events[i].payload_len)
      return uow__sink_fail(err, errcap, UOW_EINVAL,
                            "command sink: event %zu has a NULL payload of %zu bytes", i,
                            events[i].payload_len);

  uow__buf_init(&lines);
  for (size_t i = 0; i < n; i++)
    uow__sink_json_event(&lines, &events[i]);
  if (uow__buf_status(&lines)) {
    uow__buf_free(&lines);
    return uow__sink_fail(err, errcap, UOW_ENOMEM, "command sink '%s': out of memory", sink->name);
  }

  if (make_pipe(fds) != 0) {
    rc = errno;
    uow__buf_free(&lines);
    return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': pipe: %s", sink->name,
                          strerror(rc));
  }
  rc = spawn_shell(sink->command, fds[0], &pid);
  close(fds[0]);
  if (rc) {
    close(fds[1]);
    uow__buf_free(&lines);
    return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': cannot run /bin/sh: %s",
                          sink->name, strerror(rc));
  }

  uow_sigpipe_guard guard;
  uow__sigpipe_block(&guard);
  int write_error = write_all(fds[1], lines.data, lines.len);
  close(fds[1]); /* EOF for the command */
  uow__sigpipe_restore(&guard);
  uow__buf_free(&lines);

  int status;
  pid_t waited;
  do
    waited = waitpid(pid, &status, 0);
  while (waited < 0 && errno == EINTR);
  if (waited < 0)
    return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': waitpid: %s", sink->name,
                          strerror(errno));

  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    /* EPIPE alone is no failure: the command chose to stop reading. */
    *delivered = n;
    return 0;
  }
  if (WIFEXITED(status))
    return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': exited with status %d%s%s",
                          sink->name, WEXITSTATUS(status),
                          WEXITSTATUS(status) == 127 ? " (command not found?)" : "",
                          write_error && write_error != EPIPE ? " after a write error" : "");
  if (WIFSIGNALED(status))
    return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': killed by signal %d",
                          sink->name, WTERMSIG(status));
  return uow__sink_fail(err, errcap, UOW_EIO, "command sink '%s': ended with wait status %d",
                        sink->name, status);
}

static void command_destroy(void *ctx) {
  command_sink *sink = ctx;
  if (!sink)
    return;
  uow__free(sink->command);
  uow__free(sink);
}

/** Whether the `len`-byte word at `word` is a shell assignment (NAME=value). */
static bool is_assignment(const char *word, size_t len) {
  static const char name_chars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789";
  size_t name = strspn(word, name_chars);
  return name > 0 && name < len && word[name] == '=' && !(word[0] >= '0' && word[0] <= '9');
}

/**
 * The command's first word, cut to COMMAND_NAME_MAX bytes, for messages.
 * Leading assignments (`TOKEN=secret cmd`) are skipped, never quoted: they
 * often hold credentials. An assignment whose value is quoted or escaped
 * cannot be skipped by words, so such a command is named "command".
 */
static void command_name(const char *command, char *name) {
  const char *start = command;
  size_t len;
  for (;;) {
    start += strspn(start, " \t\n");
    len = strcspn(start, " \t\n;|&<>()");
    if (len == 0 || !is_assignment(start, len))
      break;
    if (memchr(start, '\'', len) || memchr(start, '"', len) || memchr(start, '\\', len) ||
        memchr(start, '$', len) || memchr(start, '`', len)) {
      len = 0;
      break;
    }
    start += len;
  }
  if (len == 0) {
    memcpy(name, "command", sizeof("command"));
  } else if (len > COMMAND_NAME_MAX) {
    memcpy(name, start, COMMAND_NAME_MAX);
    memcpy(name + COMMAND_NAME_MAX, "...", 4);
  } else {
    memcpy(name, start, len);
    name[len] = '\0';
  }
}

int uow_sink_command(const char *command, uow_sink *out) {
  if (!out)
    return UOW_EINVAL;
  memset(out, 0, sizeof(*out));
  if (!command || !command[0])
    return UOW_EINVAL;
  command_sink *sink = uow__calloc(1, sizeof(*sink));
  if (!sink)
    return UOW_ENOMEM;
  sink->command = uow__strdup(command);
  if (!sink->command) {
    uow__free(sink);
    return UOW_ENOMEM;
  }
  command_name(command, sink->name);
  out->version = UOW_SINK_VERSION;
  out->name = "command";
  out->deliver = command_deliver;
  out->destroy = command_destroy;
  out->ctx = sink;
  return 0;
}
