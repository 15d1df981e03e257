/*
 * fuzz_uowctl_config.c - ctl_config_load (tools/uowctl_config.c), uowctl's
 * INI configuration loader on inih. It reads a path, so each input is
 * written to a scratch file first. Checks: a file that loads has a store, a
 * url for every store, unique store names, and a decider and outbox that name
 * stores; one that does not load holds nothing.
 */
#define _DEFAULT_SOURCE /* mkstemp */
#include <stdbool.h>
#include <unistd.h>

#include "fuzz.h"
#include "uowctl.h"

static char scratch[256];

static void remove_scratch(void) { unlink(scratch); }

static bool names_a_store(const ctl_config *config, const char *name) {
  for (size_t i = 0; i < config->nstores; i++)
    if (strcmp(config->stores[i].name, name) == 0)
      return true;
  return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!scratch[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof(scratch), "%.200s/uowctl-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(scratch);
    if (fd < 0) {
      perror("fuzz_uowctl_config: mkstemp");
      abort();
    }
    close(fd);
    atexit(remove_scratch);
  }
  FILE *f = fopen(scratch, "wb");
  FUZZ_CHECK(f != NULL);
  FUZZ_CHECK(fwrite(data, 1, size, f) == size || size == 0);
  FUZZ_CHECK(fclose(f) == 0);

  ctl_config config;
  int rc = ctl_config_load(scratch, true, &config);
  FUZZ_CHECK(rc == UOWCTL_EXIT_OK || rc == UOWCTL_EXIT_USAGE || rc == UOWCTL_EXIT_FAILED);
  if (rc != UOWCTL_EXIT_OK) {
    FUZZ_CHECK(config.nstores == 0 && !config.stores && !config.decider && !config.outbox);
    return 0;
  }
  FUZZ_CHECK(config.nstores > 0 && config.nstores <= config.cap);
  FUZZ_CHECK(config.pool_size <= 1000);
  for (size_t i = 0; i < config.nstores; i++) {
    const ctl_store *store = &config.stores[i];
    FUZZ_CHECK(store->name && *store->name && store->url && *store->url && store->line > 0);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(config.stores[j].name, store->name) != 0);
  }
  FUZZ_CHECK(!config.decider || names_a_store(&config, config.decider));
  FUZZ_CHECK(!config.outbox || names_a_store(&config, config.outbox));
  ctl_config_free(&config);
  return 0;
}
