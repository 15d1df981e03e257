/*
 * fuzz_store_url.c - store URLs through the public entry, uow_env_add_store:
 * the scheme lookup, the redaction of the URL kept for messages (env.c), the
 * Redis store's URL check (redis.c: it does not connect) and the SQLite
 * store's URL parser (parse_url in sqlite.c, static, so reached this way).
 *
 * Inputs starting with "redis" are used as they are. Any other input is made
 * a SQLite URL that cannot leave a scratch directory: "sqlite:DIR/db" + the
 * input, with '/' in the part before '?' turned into '_' (or
 * "sqlite::memory:" + the options when the input is ":memory:" or ":memory:?...").
 * SQLite then opens or creates the file, so the options reach the database;
 * the directory is emptied after each input.
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <dirent.h>
#include <stdbool.h>
#include <unistd.h>

#include "core/core.h"
#include "fuzz.h"
#include "sinks/redis_url.h"

static char scratch[256];

static void empty_scratch(void) {
  DIR *dir = opendir(scratch);
  if (!dir)
    return;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    char path[sizeof(scratch) + 300];
    snprintf(path, sizeof(path), "%s/%s", scratch, entry->d_name);
    unlink(path);
  }
  closedir(dir);
}

static void remove_scratch(void) {
  empty_scratch();
  rmdir(scratch);
}

static const char *scratch_dir(void) {
  if (!scratch[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof(scratch), "%.200s/uow-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
      perror("fuzz_store_url: mkdtemp");
      abort();
    }
    atexit(remove_scratch);
  }
  return scratch;
}

/** The SQLite URL for an input, confined to the scratch directory (malloc'd). */
static char *sqlite_url(const char *input) {
  size_t len = strlen(input);
  char *url = malloc(len + sizeof(scratch) + 32);
  FUZZ_CHECK(url != NULL);
  /* Only ":memory:" itself: SQLite would make ":memory:x" a file in the current directory. */
  if (strncmp(input, ":memory:", 8) == 0 && (input[8] == '\0' || input[8] == '?')) {
    sprintf(url, "sqlite:%s", input);
    return url;
  }
  int n = sprintf(url, "sqlite:%s/db", scratch_dir());
  const char *query = strchr(input, '?');
  for (const char *c = input; *c; c++)
    url[n++] = (*c == '/' && (!query || c < query)) ? '_' : *c;
  url[n] = '\0';
  return url;
}

/** A password that the Redis parser finds must not be in `shown` (a message, the kept URL). */
static void check_redis_password_hidden(const char *url, const char *shown) {
  uow_redis_url parsed;
  if (uow__redis_url_parse(url, &parsed) != 0)
    return;
  const char *pw = parsed.password;
  /* Percent-encoded or repeated text, or text that other parts hold too, may show. */
  size_t count = 0;
  for (const char *p = pw ? strstr(url, pw) : NULL; p; p = strstr(p + 1, pw))
    count++;
  bool ambiguous = !pw || strlen(pw) < 4 || strchr(url, '%') || count != 1 ||
                   (parsed.user && strstr(parsed.user, pw)) ||
                   (parsed.host && strstr(parsed.host, pw)) ||
                   (parsed.path && strstr(parsed.path, pw));
  if (!ambiguous)
    FUZZ_CHECK(strstr(shown, pw) == NULL);
  uow__redis_url_free(&parsed);
}

/** The URL kept for messages is the URL with "***" for a password (masked whole). */
static void check_kept_url(const char *url, const char *kept) {
  uow_redis_url parsed, shown;
  if (strstr(url, "password=") || uow__redis_url_parse(url, &parsed) != 0)
    return;
  if (parsed.password) {
    FUZZ_CHECK(uow__redis_url_parse(kept, &shown) == 0);
    FUZZ_CHECK(strcmp(shown.password, "***") == 0);
    FUZZ_CHECK(shown.db == parsed.db && shown.port == parsed.port);
    uow__redis_url_free(&shown);
  }
  uow__redis_url_free(&parsed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0; /* longer URLs teach nothing more and slow SQLite down */
  char *input = fuzz_cstring(data, size);
  bool redis = strncmp(input, "redis", 5) == 0;
  char *url = redis ? input : sqlite_url(input);

  uow_env *env = NULL;
  FUZZ_CHECK(uow_env_open(NULL, &env) == 0);
  int rc = uow_env_add_store(env, "fz", url);
  FUZZ_CHECK(rc == 0 || rc == UOW_EINVAL || rc == UOW_EIO || rc == UOW_ENOMEM);
  if (redis) {
    check_redis_password_hidden(url, uow_env_errmsg(env));
    uow_store *store = uow__env_store(env, "fz");
    if (store) {
      check_redis_password_hidden(url, store->url);
      if (strlen(url) < 400) /* the kept URL is cut at 511 bytes */
        check_kept_url(url, store->url);
    }
  }
  uow_env_close(env);

  if (!redis) {
    empty_scratch();
    free(url);
  }
  free(input);
  return 0;
}
