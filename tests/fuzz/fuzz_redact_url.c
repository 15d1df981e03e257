/*
 * fuzz_redact_url.c - uow__redact_url (src/util/error.c), which masks the
 * password of every store URL before it reaches a message or uowctl's
 * output. The first byte picks the output's capacity (0..254, or 4096 for
 * 0xff), the rest is the URL. Checks: the output is a string within its
 * capacity; every "password=" is followed by *** or nothing; a URL without
 * credentials comes out as it went in; and a password that the Redis URL
 * parser (src/sinks/redis_url.c) would send to the server is masked whole.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "sinks/redis_url.h"
#include "util/util.h"

static size_t occurrences(const char *haystack, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/** Every "password=" in `out` is masked: "***" then the end or a separator, or cut off. */
static void check_conninfo_masked(const char *out) {
  for (const char *p = strstr(out, "password="); p; p = strstr(p + 1, "password=")) {
    const char *value = p + strlen("password=");
    if (!*value)
      continue;
    FUZZ_CHECK(strncmp(value, "***", 3) == 0);
    FUZZ_CHECK(value[3] == '\0' || value[3] == '&' || value[3] == ' ');
  }
}

/** A password the Redis parser takes out of `url` must not be in `out` (when it fit). */
static void check_redis_password_hidden(const char *url, const char *out) {
  uow_redis_url parsed;
  if (uow__redis_url_parse(url, &parsed) != 0)
    return;
  const char *pw = parsed.password;
  /* Percent-encoded or repeated text, or text that the rest of the URL holds
   * too, may legitimately appear. */
  bool ambiguous = !pw || strchr(url, '%') || occurrences(url, pw) != 1 ||
                   (parsed.user && strstr(parsed.user, pw)) ||
                   (parsed.host && strstr(parsed.host, pw)) ||
                   (parsed.path && strstr(parsed.path, pw)) ||
                   strstr("redis+unix://:***@/?db=0123456789[].:", pw);
  if (!ambiguous)
    FUZZ_CHECK(strstr(out, pw) == NULL);
  /* The redacted URL is the same URL with "***" for the password: a password
   * is masked whole, not up to a raw '@' inside it. ("password=" in a user
   * name masks more, up to the next '&' or blank: never less.) */
  uow_redis_url shown;
  if (pw && !strstr(url, "password=")) {
    FUZZ_CHECK(uow__redis_url_parse(out, &shown) == 0);
    FUZZ_CHECK(strcmp(shown.password, "***") == 0);
    FUZZ_CHECK(shown.unix_socket == parsed.unix_socket && shown.db == parsed.db);
    FUZZ_CHECK(!shown.host || strcmp(shown.host, parsed.host) == 0);
    uow__redis_url_free(&shown);
  }
  uow__redis_url_free(&parsed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t cap = data[0] == 0xff ? 4096 : data[0];
  char *url = fuzz_cstring(data + 1, size - 1);
  size_t url_len = strlen(url);
  char *out = malloc(cap ? cap : 1); /* exactly `cap` bytes: ASan sees a write past them */
  FUZZ_CHECK(out != NULL);
  uow__redact_url(url, out, cap);
  if (cap) {
    FUZZ_CHECK(memchr(out, '\0', cap) != NULL);
    check_conninfo_masked(out);
    if (!strchr(url, '@') && !strstr(url, "password=")) {
      size_t kept = url_len < cap - 1 ? url_len : cap - 1;
      FUZZ_CHECK(strlen(out) == kept && memcmp(out, url, kept) == 0);
    }
    if (cap == 4096 && url_len < 2048)
      check_redis_password_hidden(url, out);
  }
  free(out);
  free(url);
  return 0;
}
