/*
 * replay.c - the main() of a fuzz target in a build without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on each file named, or on each file in each
 * directory named, so that CTest replays the committed corpora (with ASan and
 * UBSan in the sanitizer tree). Exits 1 when it found no input to run: an
 * empty or missing corpus must not pass unnoticed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/** Run the target on one file; false when it cannot be read. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 0;
  }
  size_t cap = 4096, len = 0;
  unsigned char *data = malloc(cap);
  size_t n;
  while (data && (n = fread(data + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      unsigned char *grown = realloc(data, cap * 2);
      if (!grown) {
        free(data);
        data = NULL;
        break;
      }
      data = grown;
      cap *= 2;
    }
  }
  int ok = data && !ferror(f);
  fclose(f);
  if (!ok) {
    free(data);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return 0;
  }
  /* An exact-size copy, so that ASan sees a read past the input's end. */
  unsigned char *input = malloc(len ? len : 1);
  if (!input) {
    free(data);
    return 0;
  }
  if (len)
    memcpy(input, data, len);
  free(data);
  LLVMFuzzerTestOneInput(input, len);
  free(input);
  return 1;
}

int main(int argc, char **argv) {
  size_t runs = 0;
  int failed = 0;
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    if (stat(argv[i], &sb) != 0) {
      fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
      failed = 1;
      continue;
    }
    if (!S_ISDIR(sb.st_mode)) {
      if (replay_file(argv[i]))
        runs++;
      else
        failed = 1;
      continue;
    }
    DIR *dir = opendir(argv[i]);
    if (!dir) {
      fprintf(stderr, "replay: cannot open directory %s\n", argv[i]);
      failed = 1;
      continue;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
      if (entry->d_name[0] == '.')
        continue;
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
      if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        continue;
      if (replay_file(path))
        runs++;
      else
        failed = 1;
    }
    closedir(dir);
  }
  printf("replay: %zu inputs\n", runs);
  return failed || runs == 0 ? 1 : 0;
}
