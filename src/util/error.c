/*
 * error.c - error codes, store statuses and the redaction that keeps
 * passwords in URLs out of every message.
 */
#include <stdio.h>
#include <string.h>

#include "util.h"

const char *uow_strerror(int code) {
  switch (code) {
  case UOW_OK:
    return "success";
  case UOW_ENOTFOUND:
    return "not found";
  case UOW_ECONFLICT:
    return "conflict (retry the unit)";
  case UOW_ECONSTRAINT:
    return "constraint violated";
  case UOW_EMISUSE:
    return "misuse (call out of order)";
  case UOW_EINVAL:
    return "invalid argument";
  case UOW_ENOMEM:
    return "out of memory";
  case UOW_EIO:
    return "store unreachable or I/O error";
  case UOW_EINDOUBT:
    return "commit outcome in doubt (recovery settles it)";
  default:
    return "unknown error";
  }
}

int uow_status_set(uow_status *st, int code, const char *fmt, ...) {
  if (!st)
    return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(st->message, sizeof(st->message), fmt, ap);
  va_end(ap);
  st->code = code;
  return code;
}

void uow__redact_url(const char *url, char *out, size_t cap) {
  if (!cap)
    return;
  const char *scheme_end = strstr(url, "://");
  const char *authority = scheme_end ? scheme_end + 3 : NULL;
  /* The last '@' before the path ends the credentials: a password may hold
   * a raw '@' (the Redis URL parser splits there too), and masking only up to
   * the first one would show the rest of it. With no '@' before the first
   * '/', a raw '/' may be in the password (libpq then misreads the URL, and
   * its message must not show it either): the last '@' before the query is
   * taken. An '@' in the path then masks more than the password, never less. */
  const char *slash = authority ? authority + strcspn(authority, "/") : NULL;
  const char *end = authority ? authority + strcspn(authority, "?#") : NULL;
  const char *at = NULL;
  for (const char *p = authority; p && p < slash; p++)
    if (*p == '@')
      at = p;
  const char *late = NULL;
  for (const char *p = slash; p && !at && p < end; p++)
    if (*p == '@')
      late = p;
  if (!at)
    at = late;
  if (at) {
    const char *colon = memchr(authority, ':', (size_t)(at - authority));
    if (colon) {
      snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
      goto params;
    }
  }
  snprintf(out, cap, "%s", url);
params:;
  /* conninfo style "password=..." anywhere, including in a query string */
  char *p = strstr(out, "password=");
  while (p) {
    char *value = p + strlen("password=");
    size_t len = strcspn(value, "& ");
    if (*value == '\'') { /* conninfo quoting: 'a\'b c' */
      len = 1;
      while (value[len] && value[len] != '\'') {
        if (value[len] == '\\' && value[len + 1])
          len++;
        len++;
      }
      if (value[len])
        len++;
      len += strcspn(value + len, "& "); /* what follows the quote, up to a separator */
    }
    size_t tail = strlen(value + len);
    if ((size_t)(value - out) + 3 + tail + 1 > cap) {
      *value = '\0'; /* no room to mask in place: cut the rest off */
      break;
    }
    memmove(value + 3, value + len, tail + 1);
    memcpy(value, "***", 3);
    p = strstr(value, "password=");
  }
}
