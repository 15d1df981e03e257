/*
 * fuzz_redis_url.c - uow__redis_url_parse (src/sinks/redis_url.c), the parser
 * of the Redis store's and the Redis stream sink's URLs. Beyond memory
 * errors it checks what a parsed URL promises: a port in 1..65535, a host or
 * a socket path, and a label that does not depend on the password and that
 * parses back to the same place.
 */
#include "fuzz.h"
#include "sinks/redis_url.h"
#include "util/util.h"

/** The label of `url` without its credentials must parse back to the same server. */
static void check_label_round_trip(const uow_redis_url *url) {
  uow_redis_url bare = *url;
  bare.user = NULL;
  bare.password = NULL;
  char label[512];
  uow__redis_url_label(&bare, label, sizeof(label));
  /* A socket path is labelled as it is, not percent-encoded: only plain ones come back. */
  if (url->unix_socket && strpbrk(url->path, "%?#"))
    return;
  uow_redis_url again;
  int rc = uow__redis_url_parse(label, &again);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(again.unix_socket == url->unix_socket);
  FUZZ_CHECK(again.db == url->db);
  if (url->unix_socket) {
    FUZZ_CHECK(strcmp(again.path, url->path) == 0);
  } else {
    FUZZ_CHECK(strcmp(again.host, url->host) == 0);
    FUZZ_CHECK(again.port == url->port);
  }
  uow__redis_url_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_cstring(data, size);
  uow_redis_url url;
  int rc = uow__redis_url_parse(text, &url);
  FUZZ_CHECK(rc == 0 || rc == UOW_EINVAL || rc == UOW_ENOMEM);
  if (rc) {
    /* "On failure `url` holds nothing to free." */
    FUZZ_CHECK(!url.host && !url.path && !url.user && !url.password);
    free(text);
    return 0;
  }
  FUZZ_CHECK(url.db >= 0);
  FUZZ_CHECK(!url.user || url.password); /* a user alone is refused */
  FUZZ_CHECK(!url.password || *url.password);
  if (url.unix_socket) {
    FUZZ_CHECK(url.path && url.path[0] == '/' && !url.host);
  } else {
    FUZZ_CHECK(url.host && !url.path);
    FUZZ_CHECK(url.port >= 1 && url.port <= 65535);
  }

  char label[600];
  uow__redis_url_label(&url, label, sizeof(label));
  FUZZ_CHECK(strlen(label) < sizeof(label));
  if (url.password) {
    FUZZ_CHECK(strstr(label, ":***@") != NULL);
    /* The label does not depend on the password at all. */
    uow_redis_url other = url;
    other.password = "x";
    char other_label[600];
    uow__redis_url_label(&other, other_label, sizeof(other_label));
    FUZZ_CHECK(strcmp(label, other_label) == 0);
  }
  check_label_round_trip(&url);
  uow__redis_url_free(&url);
  FUZZ_CHECK(!url.host && !url.password);
  free(text);
  return 0;
}
