/*
 * uowctl_config.c - reading uowctl's configuration file: an INI file (parsed
 * with inih) of one optional [env] section and [store NAME] sections, each
 * with a url. Every error is reported once, as FILE:LINE: message, and never
 * echoes a URL (it may hold a password). See uowctl.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "uowctl.h"

/** Largest pool_size accepted in the configuration file. */
#define UOWCTL_MAX_POOL_SIZE 1000

/*
 * The longest configuration line, counting the line break and the NUL. The
 * Debian build of inih can grow its line buffer at run time (detected by
 * tools/CMakeLists.txt): long PostgreSQL URLs then fit. Plain inih keeps its
 * compiled-in limit, and a longer line is reported instead of being split.
 */
#ifdef UOWCTL_INIH_RUNTIME_OPTIONS
#define UOWCTL_CONFIG_LINE_MAX 4096
#else
#define UOWCTL_CONFIG_LINE_MAX INI_MAX_LINE
#endif

/** The kind of section the parser is in. */
typedef enum section_kind { SECTION_NONE, SECTION_ENV, SECTION_STORE } section_kind;

/* Keys of a section, one bit each, to refuse a key given twice. */
#define KEY_POOL_SIZE 0x1u
#define KEY_DECIDER 0x2u
#define KEY_OUTBOX 0x4u
#define KEY_URL 0x8u

/*
 * State shared by the line reader and the key handler that inih calls. inih
 * calls the handler for a line right after reading it, so `line` is the line
 * of the key being handled. Section headers are parsed here from the raw line,
 * because inih reports only keys: a section without keys must still be seen.
 */
typedef struct config_parser {
  ctl_config *config;
  FILE *file;
  int line;           /* 1-based number of the line being parsed */
  bool line_complete; /* the last read ended a line */
  size_t line_length; /* bytes of the current line read so far */
  bool indented;      /* the current line starts with white space */
  section_kind section;
  size_t store;       /* index of the current store (SECTION_STORE) */
  unsigned keys_seen; /* KEY_* bits of the current section */
  int env_line;       /* line of the [env] header, 0 if none yet */
  int error_line;     /* line of the first error, -1 for a file-wide one, 0 if none */
  bool out_of_memory; /* the error is a failed allocation */
  char error[300];    /* the first error */
} config_parser;

/** Record the first error of the file, at `line` (-1: the file as a whole). */
UOWCTL_PRINTF(3, 4)
static void config_fail(config_parser *p, int line, const char *fmt, ...) {
  if (p->error_line)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->error, sizeof(p->error), fmt, ap);
  va_end(ap);
  p->error_line = line;
}

/** Record a failed allocation as the parser's error. */
static void config_oom(config_parser *p) {
  config_fail(p, p->line ? p->line : -1, "out of memory");
  p->out_of_memory = true;
}

/* See uowctl.h. */
void ctl_config_free(ctl_config *config) {
  if (!config)
    return;
  for (size_t i = 0; i < config->nstores; i++) {
    free(config->stores[i].name);
    free(config->stores[i].url);
  }
  free(config->stores);
  free(config->decider);
  free(config->outbox);
  memset(config, 0, sizeof(*config));
}

/* See uowctl.h. */
char *ctl_copy_string(const char *s, size_t n) {
  char *copy = malloc(n + 1);
  if (copy) {
    memcpy(copy, s, n);
    copy[n] = '\0';
  }
  return copy;
}

/** Whether `s` is a store name the library accepts: letters, digits and underscores. */
static bool is_identifier(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

/** Whether `c` is a space or a tab. */
static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/** The store named `name` (`n` bytes) in the configuration, or NULL. */
static const ctl_store *config_store(const ctl_config *config, const char *name, size_t n) {
  for (size_t i = 0; i < config->nstores; i++)
    if (strlen(config->stores[i].name) == n && memcmp(config->stores[i].name, name, n) == 0)
      return &config->stores[i];
  return NULL;
}

/** Begin a [store NAME] section whose name is the `n` bytes at `name`. */
static void config_begin_store(config_parser *p, const char *name, size_t n) {
  ctl_config *config = p->config;
  if (n == 0) {
    config_fail(p, p->line, "a store section needs a name: [store NAME]");
    return;
  }
  if (!is_identifier(name, n)) {
    config_fail(p, p->line, "bad store name '%.*s' (use letters, digits and underscores)",
                (int)(n > 64 ? 64 : n), name);
    return;
  }
  const ctl_store *twin = config_store(config, name, n);
  if (twin) {
    config_fail(p, p->line, "store '%.*s' is defined twice (first on line %d)", (int)n, name,
                twin->line);
    return;
  }
  if (config->nstores == config->cap) {
    size_t cap = config->cap ? 2 * config->cap : 4;
    ctl_store *stores = realloc(config->stores, cap * sizeof(*stores));
    if (!stores) {
      config_oom(p);
      return;
    }
    config->stores = stores;
    config->cap = cap;
  }
  ctl_store *store = &config->stores[config->nstores];
  store->name = ctl_copy_string(name, n);
  store->url = NULL;
  store->line = p->line;
  if (!store->name) {
    config_oom(p);
    return;
  }
  p->store = config->nstores++;
  p->section = SECTION_STORE;
}

/**
 * Parse a section header line; `s` points at its '['. A header without ']'
 * is left to inih, which reports it as a syntax error on this line.
 */
static void config_section(config_parser *p, const char *s) {
  const char *close = strchr(s, ']');
  if (!close)
    return;
  const char *rest = close + 1;
  while (is_blank(*rest))
    rest++;
  if (*rest && *rest != '\n' && *rest != '\r' && *rest != ';' && *rest != '#') {
    config_fail(p, p->line, "unexpected text after ']'");
    return;
  }
  const char *begin = s + 1, *end = close;
  while (begin < end && is_blank(*begin))
    begin++;
  while (end > begin && is_blank(end[-1]))
    end--;
  const char *word_end = begin;
  while (word_end < end && !is_blank(*word_end))
    word_end++;
  size_t word = (size_t)(word_end - begin);
  const char *name = word_end;
  while (name < end && is_blank(*name))
    name++;

  p->keys_seen = 0;
  p->section = SECTION_NONE;
  if (word == 3 && memcmp(begin, "env", 3) == 0 && name == end) {
    if (p->env_line) {
      config_fail(p, p->line, "[env] is given twice (first on line %d)", p->env_line);
      return;
    }
    p->env_line = p->line;
    p->section = SECTION_ENV;
  } else if (word == 5 && memcmp(begin, "store", 5) == 0) {
    config_begin_store(p, name, (size_t)(end - name));
  } else {
    size_t n = (size_t)(end - begin);
    config_fail(p, p->line, "unknown section [%.*s] (expected [env] or [store NAME])",
                (int)(n > 64 ? 64 : n), begin);
  }
}

/**
 * inih's line reader: fgets() that counts lines, parses section headers and
 * refuses lines too long for inih's buffer (inih would split them silently).
 * Returning NULL ends the parse, which is how the first error stops it.
 */
static char *config_read(char *buf, int size, void *stream) {
  config_parser *p = stream;
  if (p->error_line || size < 2 || !fgets(buf, size, p->file))
    return NULL;
  size_t n = strlen(buf);
  bool starts_line = p->line_complete;
  if (starts_line) {
    p->line++;
    p->line_length = 0;
  }
  p->line_length += n;
  bool complete = n > 0 && buf[n - 1] == '\n';
  if (!complete) {
    int next = getc(p->file);
    if (next == EOF)
      complete = true;
    else
      ungetc(next, p->file);
  }
  p->line_complete = complete;
  if (!complete && p->line_length + 1 >= UOWCTL_CONFIG_LINE_MAX) {
    config_fail(p, p->line, "the line is longer than %d characters", UOWCTL_CONFIG_LINE_MAX - 3);
    return NULL;
  }
  if (!starts_line)
    return buf;

  const char *s = buf;
  if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
    s += 3; /* a UTF-8 byte order mark, which inih skips too */
  p->indented = is_blank(*s);
  while (is_blank(*s))
    s++;
  if (*s == '[') {
    if (!complete) {
      config_fail(p, p->line, "the section header is too long");
      return NULL;
    }
    config_section(p, s);
    if (p->error_line)
      return NULL;
  }
  return buf;
}

/** Parse a pool_size value: a whole number from 1 to UOWCTL_MAX_POOL_SIZE. */
static bool parse_pool_size(const char *value, unsigned *out) {
  unsigned long n = 0;
  if (!*value)
    return false;
  for (const char *c = value; *c; c++) {
    if (*c < '0' || *c > '9')
      return false;
    n = n * 10 + (unsigned long)(*c - '0');
    if (n > UOWCTL_MAX_POOL_SIZE)
      return false;
  }
  if (n == 0)
    return false;
  *out = (unsigned)n;
  return true;
}

/** Mark `key` as seen in this section; false (and an error) if it was already. */
static bool config_key_once(config_parser *p, unsigned key, const char *name) {
  if (p->keys_seen & key) {
    config_fail(p, p->line, "'%s' is set twice in this section", name);
    return false;
  }
  p->keys_seen |= key;
  return true;
}

/** Store a store-name value (decider, outbox); the name is checked against the stores later. */
static void config_store_ref(config_parser *p, const char *key, const char *value, char **slot,
                             int *line) {
  if (!is_identifier(value, strlen(value))) {
    config_fail(p, p->line, "%s must name a store (letters, digits and underscores)", key);
    return;
  }
  if (!(*slot = ctl_copy_string(value, strlen(value)))) {
    config_oom(p);
    return;
  }
  *line = p->line;
}

/** Handle a key of [env]. */
static void config_env_key(config_parser *p, const char *name, const char *value) {
  ctl_config *config = p->config;
  if (strcmp(name, "pool_size") == 0) {
    if (config_key_once(p, KEY_POOL_SIZE, name) && !parse_pool_size(value, &config->pool_size))
      config_fail(p, p->line, "pool_size must be a whole number from 1 to %d",
                  UOWCTL_MAX_POOL_SIZE);
  } else if (strcmp(name, "decider") == 0) {
    if (config_key_once(p, KEY_DECIDER, name))
      config_store_ref(p, name, value, &config->decider, &config->decider_line);
  } else if (strcmp(name, "outbox") == 0) {
    if (config_key_once(p, KEY_OUTBOX, name))
      config_store_ref(p, name, value, &config->outbox, &config->outbox_line);
  } else {
    config_fail(p, p->line, "unknown key '%.64s' in [env] (expected pool_size, decider or outbox)",
                name);
  }
}

/** Handle a key of [store NAME]. The value of url is never echoed: it may hold a password. */
static void config_store_key(config_parser *p, const char *name, const char *value) {
  ctl_store *store = &p->config->stores[p->store];
  if (strcmp(name, "url") == 0) {
    if (!config_key_once(p, KEY_URL, name))
      return;
    if (!*value) {
      config_fail(p, p->line, "url is empty");
      return;
    }
    if (!(store->url = ctl_copy_string(value, strlen(value))))
      config_oom(p);
  } else {
    config_fail(p, p->line, "unknown key '%.64s' in [store %s] (expected url)", name, store->name);
  }
}

/** inih's key handler: one name = value line. */
static int config_key(void *user, const char *section, const char *name, const char *value) {
  config_parser *p = user;
  (void)section; /* the reader tracks sections itself, trimmed and checked */
  if (p->error_line)
    return 1;
  if (p->indented && p->keys_seen) {
    /* inih reads an indented line after a key as more of that key's value */
    config_fail(p, p->line, "a value cannot continue on an indented line");
  } else if (p->section == SECTION_NONE) {
    config_fail(p, p->line, "'%.64s' is outside a section (put it under [env] or [store NAME])",
                name);
  } else if (p->section == SECTION_ENV) {
    config_env_key(p, name, value);
  } else {
    config_store_key(p, name, value);
  }
  return p->error_line == 0;
}

/** Checks that need the whole file: every store has a url, names refer to stores. */
static void config_check(config_parser *p) {
  const ctl_config *config = p->config;
  if (config->nstores == 0) {
    config_fail(p, -1, "no store: add a [store NAME] section with a url");
    return;
  }
  for (size_t i = 0; i < config->nstores; i++)
    if (!config->stores[i].url)
      config_fail(p, config->stores[i].line, "[store %s] has no url", config->stores[i].name);
  if (config->decider && !config_store(config, config->decider, strlen(config->decider)))
    config_fail(p, config->decider_line, "decider '%s' is not a store of this file",
                config->decider);
  if (config->outbox && !config_store(config, config->outbox, strlen(config->outbox)))
    config_fail(p, config->outbox_line, "outbox '%s' is not a store of this file", config->outbox);
}

/* See uowctl.h; the first error of the file stops the parse. */
int ctl_config_load(const char *path, bool path_given, ctl_config *config) {
  memset(config, 0, sizeof(*config));
  FILE *file = fopen(path, "r");
  if (!file) {
    fprintf(stderr, "uowctl: cannot open configuration file '%s': %s%s\n", path, strerror(errno),
            path_given ? "" : " (name one with -c FILE or UOWCTL_CONFIG)");
    return UOWCTL_EXIT_USAGE;
  }
#ifdef UOWCTL_INIH_RUNTIME_OPTIONS
  ini_use_stack = false;
  ini_allow_realloc = true;
  ini_max_line = UOWCTL_CONFIG_LINE_MAX;
#endif
  config_parser p = {0};
  p.config = config;
  p.file = file;
  p.line_complete = true;
  int syntax = ini_parse_stream(config_read, &p, config_key, &p);
  bool unreadable = ferror(file) != 0;
  int read_errno = errno;
  fclose(file);

  int rc = UOWCTL_EXIT_OK;
  if (unreadable) {
    fprintf(stderr, "uowctl: cannot read configuration file '%s': %s\n", path,
            strerror(read_errno));
    rc = UOWCTL_EXIT_USAGE;
  } else if (syntax == -2) {
    fprintf(stderr, "uowctl: out of memory reading '%s'\n", path);
    rc = UOWCTL_EXIT_FAILED;
  } else {
    /* inih numbers lines as the reader does; its error comes first when it is on an earlier line */
    if (syntax > 0 && (p.error_line <= 0 || syntax < p.error_line)) {
      p.error_line = 0;
      config_fail(&p, syntax, "syntax error (expected [section], name = value or a ; comment)");
    }
    config_check(&p);
    if (p.error_line > 0)
      fprintf(stderr, "uowctl: %s:%d: %s\n", path, p.error_line, p.error);
    else if (p.error_line < 0)
      fprintf(stderr, "uowctl: %s: %s\n", path, p.error);
    if (p.error_line)
      rc = p.out_of_memory ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_USAGE;
  }
  if (rc)
    ctl_config_free(config);
  return rc;
}
