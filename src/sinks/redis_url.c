/*
 * redis_url.c - parse the URLs of the Redis stream sink, strictly:
 *   redis://[[user]:password@]host[:port][/db]    host 127.0.0.1, port 6379, db 0
 *   redis+unix://[[user]:password@]/path/to/socket[?db=N]
 * host is a name, an IPv4 address or an [IPv6] literal; user, password and
 * path may be percent-encoded (%00 is refused). Refused with UOW_EINVAL: a
 * user without a password (is "x@" a user or a password? libraries differ),
 * an empty password, a port outside 1..65535, a db that is not digits, a
 * query string or fragment on redis://, any parameter but db= on
 * redis+unix://, a host on redis+unix://, a socket path too long for
 * sockaddr_un, and rediss:// (TLS), which this build does not speak.
 * The password is only ever kept here and in the sink's memory; labels for
 * messages are made by uow__redis_url_label() with "***" in its place.
 */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "sinks/redis_url.h"
#include "util/util.h"

/** Decimal digits only (no sign, no blanks), at most `max`. */
static bool parse_number(const char *s, size_t len, long max, long *out) {
  if (len == 0 || len > 10)
    return false;
  long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  if (v > max)
    return false;
  *out = v;
  return true;
}

/**
 * Percent-decode `len` bytes into a new string (uow__free it). UOW_EINVAL for
 * a bad escape or one that decodes to NUL, UOW_ENOMEM.
 */
static int percent_decode(const char *s, size_t len, char **out) {
  char *d = uow__malloc(len + 1);
  if (!d)
    return UOW_ENOMEM;
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      d[j++] = s[i];
      continue;
    }
    int hi = i + 2 < len ? uow__hex_digit(s[i + 1]) : -1;
    int lo = i + 2 < len ? uow__hex_digit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      uow__free(d);
      return UOW_EINVAL;
    }
    d[j++] = (char)(hi * 16 + lo);
    i += 2;
  }
  d[j] = '\0';
  *out = d;
  return 0;
}

/** `[user]:password` (the part before '@'). A user alone is refused: ambiguous. */
static int parse_userinfo(uow_redis_url *url, const char *s, size_t len) {
  const char *colon = memchr(s, ':', len);
  if (!colon || colon + 1 == s + len)
    return UOW_EINVAL;
  int rc;
  if (colon > s && (rc = percent_decode(s, (size_t)(colon - s), &url->user)))
    return rc;
  return percent_decode(colon + 1, (size_t)(s + len - colon - 1), &url->password);
}

static bool host_chars_ok(const char *s, size_t len, bool ipv6) {
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool ok = ipv6 ? (uow__hex_digit(c) >= 0 || c == ':' || c == '.')
                   : ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-' || c == '_');
    if (!ok)
      return false;
  }
  return true;
}

/** After "redis://": [userinfo@]host[:port][/db]. */
static int parse_tcp(uow_redis_url *url, const char *s) {
  size_t authority = strcspn(s, "/?#");
  if (s[authority] == '?' || s[authority] == '#')
    return UOW_EINVAL;
  const char *at = NULL;
  for (const char *p = s; p < s + authority; p++)
    if (*p == '@')
      at = p; /* the last one: a raw '@' in a password is then still parsed */
  int rc;
  const char *host = s;
  if (at) {
    if ((rc = parse_userinfo(url, s, (size_t)(at - s))))
      return rc;
    host = at + 1;
  }
  const char *end = s + authority, *port = NULL, *host_end;
  bool ipv6 = host < end && *host == '[';
  if (ipv6) {
    const char *close = memchr(host, ']', (size_t)(end - host));
    if (!close || close == host + 1)
      return UOW_EINVAL;
    host_end = close + 1;
    if (host_end < end && *host_end != ':')
      return UOW_EINVAL;
    port = host_end < end ? host_end + 1 : NULL;
    host++;
  } else {
    host_end = memchr(host, ':', (size_t)(end - host));
    port = host_end ? host_end + 1 : NULL;
    if (!host_end)
      host_end = end;
  }
  size_t host_len = (size_t)(host_end - host) - (ipv6 ? 1 : 0);
  if (host_len > 253 || !host_chars_ok(host, host_len, ipv6))
    return UOW_EINVAL;
  url->host = host_len ? uow__strndup(host, host_len) : uow__strdup("127.0.0.1");
  if (!url->host)
    return UOW_ENOMEM;
  long v = 6379;
  if (port && (!parse_number(port, (size_t)(end - port), 65535, &v) || v == 0))
    return UOW_EINVAL;
  url->port = (int)v;
  v = 0;
  /* "" and "/" mean db 0; "/N" db N; anything else is refused. */
  if (*end == '/' && end[1] && !parse_number(end + 1, strlen(end + 1), 2147483647L, &v))
    return UOW_EINVAL;
  url->db = (int)v;
  return 0;
}

/** After "redis+unix://": [userinfo@]/path[?db=N]. */
static int parse_unix(uow_redis_url *url, const char *s) {
  int rc;
  const char *slash = strchr(s, '/');
  if (!slash)
    return UOW_EINVAL;
  if (slash > s) { /* only userinfo (up to the '@' before the path) may stand there: no host */
    if (slash[-1] != '@')
      return UOW_EINVAL;
    if ((rc = parse_userinfo(url, s, (size_t)(slash - 1 - s))))
      return rc;
  }
  size_t path_len = strcspn(slash, "?#");
  if (slash[path_len] == '#' || path_len < 2)
    return UOW_EINVAL;
  if ((rc = percent_decode(slash, path_len, &url->path)))
    return rc;
  if (strlen(url->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return UOW_EINVAL;
  const char *query = slash + path_len;
  if (!*query)
    return 0;
  query++;
  if (strncmp(query, "db=", 3) != 0)
    return UOW_EINVAL; /* also an empty query and a second parameter */
  long v;
  if (!parse_number(query + 3, strlen(query + 3), 2147483647L, &v))
    return UOW_EINVAL;
  url->db = (int)v;
  return 0;
}

int uow__redis_url_parse(const char *text, uow_redis_url *url) {
  memset(url, 0, sizeof(*url));
  if (!text)
    return UOW_EINVAL;
  int rc;
  if (strncmp(text, "redis://", 8) == 0) {
    rc = parse_tcp(url, text + 8);
  } else if (strncmp(text, "redis+unix://", 13) == 0) {
    url->unix_socket = true;
    rc = parse_unix(url, text + 13);
  } else {
    rc = UOW_EINVAL;
  }
  if (rc)
    uow__redis_url_free(url);
  return rc;
}

void uow__redis_url_free(uow_redis_url *url) {
  if (!url)
    return;
  if (url->password) /* do not leave it in freed memory */
    memset(url->password, 0, strlen(url->password));
  uow__free(url->password);
  uow__free(url->user);
  uow__free(url->host);
  uow__free(url->path);
  memset(url, 0, sizeof(*url));
}

void uow__redis_url_label(const uow_redis_url *url, char *out, size_t cap) {
  char cred[300] = "";
  if (url->password)
    snprintf(cred, sizeof(cred), "%.256s:***@", url->user ? url->user : "");
  if (url->unix_socket) {
    char db[24] = "";
    if (url->db)
      snprintf(db, sizeof(db), "?db=%d", url->db);
    snprintf(out, cap, "redis+unix://%s%s%s", cred, url->path ? url->path : "", db);
  } else {
    bool ipv6 = url->host && strchr(url->host, ':');
    snprintf(out, cap, "redis://%s%s%s%s:%d/%d", cred, ipv6 ? "[" : "", url->host ? url->host : "",
             ipv6 ? "]" : "", url->port, url->db);
  }
}
