/*
 * fuzz_gid.c - uow__gid_parse (src/core/coord.c), the reader of the names of
 * prepared transactions that recovery and uowctl status list from a store
 * (pg_prepared_xacts holds those of every program on the server, not only
 * libuow's). A gid is "uow1:<unit>:<decider>:<participant>". Checks, against
 * a reading of that format written here: a gid parses exactly when it has
 * the prefix and three non-empty parts without ':' that fit their buffers,
 * and then the parts, put together again, give back the gid.
 */
#include <stdbool.h>

#include "core/core.h"
#include "fuzz.h"

/* The format, read independently: the three parts after the prefix. */
static bool well_formed(const char *gid, size_t parts_len[3]) {
  const size_t caps[3] = {sizeof(((uow_gid_parts *)0)->unit_id),
                          sizeof(((uow_gid_parts *)0)->decider),
                          sizeof(((uow_gid_parts *)0)->participant)};
  size_t prefix = strlen(UOW__GID_PREFIX);
  if (strncmp(gid, UOW__GID_PREFIX, prefix) != 0)
    return false;
  const char *p = gid + prefix;
  for (int i = 0; i < 3; i++) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    if (n == 0 || n >= caps[i] || (i < 2) != (colon != NULL))
      return false;
    parts_len[i] = n;
    p += n + (colon != NULL);
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *gid = fuzz_cstring(data, size);
  uow_gid_parts parts;
  memset(&parts, 0x5a, sizeof(parts)); /* no NUL: a part left unterminated shows */
  size_t lens[3];
  bool want = well_formed(gid, lens);
  bool got = uow__gid_parse(gid, &parts);
  FUZZ_CHECK(got == want);
  if (got) {
    FUZZ_CHECK(strlen(parts.unit_id) == lens[0]);
    FUZZ_CHECK(strlen(parts.decider) == lens[1]);
    FUZZ_CHECK(strlen(parts.participant) == lens[2]);
    char again[256];
    int n = snprintf(again, sizeof(again), UOW__GID_PREFIX "%s:%s:%s", parts.unit_id, parts.decider,
                     parts.participant);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(again) && strcmp(again, gid) == 0);
  }
  free(gid);
  return 0;
}
