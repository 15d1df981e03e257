/*
 * uowctl - the command-line tool of libuow: see the stores of an application
 * (status), settle units that a crash left in doubt (recover) and create the
 * library's own tables (schema).
 *
 *   uowctl [-c FILE] status [--json]
 *   uowctl [-c FILE] recover [--json]
 *   uowctl [-c FILE] schema
 *
 * The stores come from an INI file (parsed with inih) and are added to an
 * environment in file order, exactly as the application adds them; from there
 * on only the public API (uow.h) is used, so what uowctl reports is what the
 * application's own environment sees. URLs are never printed from the file:
 * they can hold passwords, and the library gives them back with the password
 * hidden.
 *
 * Exit status: 0 success; 1 the command failed or a store is unreachable;
 * 2 bad usage or a bad configuration file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "uow.h"

/* ---- exit statuses ---- */

/** Everything worked (and, for status, every store is reachable). */
#define UOWCTL_EXIT_OK 0
/** The command failed, or status found a store it cannot reach. */
#define UOWCTL_EXIT_FAILED 1
/** Bad command line or bad configuration file. */
#define UOWCTL_EXIT_USAGE 2

/** The configuration file read when neither -c nor UOWCTL_CONFIG names one. */
#define UOWCTL_DEFAULT_CONFIG "uowctl.ini"

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

/* ---- configuration ---- */

/** One [store NAME] section. */
typedef struct ctl_store {
  char *name; /* owned */
  char *url;  /* owned; may hold a password: never print it */
  int line;   /* line of the section header */
} ctl_store;

/** What a configuration file says. Release with config_free(). */
typedef struct ctl_config {
  unsigned pool_size; /* 0: the library's default */
  char *decider;      /* owned, or NULL */
  int decider_line;
  char *outbox; /* owned, or NULL */
  int outbox_line;
  ctl_store *stores; /* in file order */
  size_t nstores;
  size_t cap;
} ctl_config;

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

#if defined(__GNUC__)
#define UOWCTL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define UOWCTL_PRINTF(fmt, args)
#endif

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

/** Free what a configuration holds (not the struct itself). Accepts NULL. */
static void config_free(ctl_config *config) {
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

/** A heap copy of `n` bytes of `s` plus a NUL, or NULL when memory is short. */
static char *copy_string(const char *s, size_t n) {
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
  store->name = copy_string(name, n);
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
  if (!(*slot = copy_string(value, strlen(value)))) {
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
    if (!(store->url = copy_string(value, strlen(value))))
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

/**
 * Read the configuration file at `path` into `config`. Errors are printed as
 * "uowctl: FILE:LINE: message".
 * @return UOWCTL_EXIT_OK; UOWCTL_EXIT_USAGE (cannot open or read it, or an
 *         error in it); UOWCTL_EXIT_FAILED (out of memory). `config` holds
 *         nothing to free after a failure.
 */
static int config_load(const char *path, bool path_given, ctl_config *config) {
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
    config_free(config);
  return rc;
}

/* ---- output helpers ---- */

/** Length of `s` without trailing white space (messages from drivers end in newlines). */
static size_t trimmed_length(const char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  return n;
}

/** Print a message on one line: line breaks and tabs become spaces, trailing ones go. */
static void print_one_line(FILE *out, const char *s) {
  size_t n = trimmed_length(s);
  for (size_t i = 0; i < n; i++)
    fputc(s[i] == '\n' || s[i] == '\r' || s[i] == '\t' ? ' ' : s[i], out);
}

/** Length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0 if it is not valid. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp, min;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/**
 * Print `n` bytes of `s` as a JSON string: quotes, backslashes and control
 * characters escaped, bytes that are not UTF-8 replaced by U+FFFD (driver
 * messages may come in another encoding).
 */
static void json_string_n(FILE *out, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  fputc('"', out);
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    size_t len = utf8_sequence(u + i, n - i);
    if (len == 0) {
      fputs("\\ufffd", out);
      i++;
      continue;
    }
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", (char)c);
    else if (c == '\n')
      fputs("\\n", out);
    else if (c == '\r')
      fputs("\\r", out);
    else if (c == '\t')
      fputs("\\t", out);
    else if (c < 0x20 || c == 0x7F)
      fprintf(out, "\\u%04x", c);
    else
      fwrite(u + i, 1, len, out);
    i += len;
  }
  fputc('"', out);
}

/** Print `s` as a JSON string, or null when `s` is NULL. */
static void json_string(FILE *out, const char *s) {
  if (s)
    json_string_n(out, s, strlen(s));
  else
    fputs("null", out);
}

/** Print a count as JSON: null when it is unknown (negative). */
static void json_count(FILE *out, int64_t n) {
  if (n < 0)
    fputs("null", out);
  else
    fprintf(out, "%" PRId64, n);
}

/** Print a tri-state as JSON: true, false, or null when unknown (negative). */
static void json_bool(FILE *out, int b) { fputs(b < 0 ? "null" : b ? "true" : "false", out); }

/* ---- the environment ---- */

/** The message to show for `rc`: the environment's when there is one, else the code's. */
static const char *env_message(const uow_env *env, int rc) {
  const char *msg = env ? uow_env_errmsg(env) : "";
  return msg && *msg ? msg : uow_strerror(rc);
}

/**
 * Open an environment with the [env] options of `config` (no stores yet).
 * @return 0 or the library's code (then *env may be NULL).
 */
static int env_open(const ctl_config *config, uow_env **env) {
  uow_env_options opts = UOW_ENV_OPTIONS_INIT;
  opts.pool_size = config->pool_size;
  opts.decider_store = config->decider;
  opts.outbox_store = config->outbox;
  *env = NULL;
  return uow_env_open(&opts, env);
}

/** Print the library's message for a failure: "uowctl: message" on one line of stderr. */
static void print_failure(const uow_env *env, int rc) {
  fputs("uowctl: ", stderr);
  print_one_line(stderr, env_message(env, rc));
  fputc('\n', stderr);
}

/**
 * Open an environment and add every store of `config`, stopping at the first
 * failure, whose message is printed with print_failure().
 * @return 0 or the library's code; close *env with uow_env_close() either way.
 */
static int env_setup(const ctl_config *config, uow_env **env) {
  int rc = env_open(config, env);
  for (size_t i = 0; !rc && i < config->nstores; i++)
    rc = uow_env_add_store(*env, config->stores[i].name, config->stores[i].url);
  if (rc)
    print_failure(*env, rc);
  return rc;
}

/* ---- status ---- */

/** One line of the status report. Strings belong to the environment or to the row. */
typedef struct status_row {
  const char *name;
  char scheme[32];
  const char *url;   /* NULL when the store could not be added */
  int transactional; /* 1, 0, or -1 unknown */
  int can_prepare;   /* 1, 0, or -1 unknown */
  bool reachable;
  int64_t in_doubt, decisions, outbox_pending, outbox_dead; /* -1 unknown */
  const char *error;                                        /* "" when fine */
} status_row;

/** The scheme of `url` (the part before ':'), which never holds a password; "?" if odd. */
static void url_scheme(const char *url, char *out, size_t cap) {
  size_t n = strcspn(url, ":");
  bool ok = url[n] == ':' && n > 0 && n < cap;
  for (size_t i = 0; ok && i < n; i++) {
    char c = url[i];
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.';
  }
  snprintf(out, cap, "%.*s", ok ? (int)n : 1, ok ? url : "?");
}

/** Fill a row from the library's status of a store. */
static void row_from_status(status_row *row, const uow_store_status *st) {
  row->name = st->name;
  snprintf(row->scheme, sizeof(row->scheme), "%s", st->scheme ? st->scheme : "?");
  row->url = st->url;
  row->transactional = st->transactional;
  row->can_prepare = st->can_prepare;
  row->reachable = st->reachable;
  row->in_doubt = st->in_doubt;
  row->decisions = st->decisions;
  row->outbox_pending = st->outbox_pending;
  row->outbox_dead = st->outbox_dead;
  row->error = st->error;
}

/** Fill a row for a store the environment refused to add; `error` is the library's message. */
static void row_from_failure(status_row *row, const ctl_store *store, const char *error) {
  row->name = store->name;
  url_scheme(store->url, row->scheme, sizeof(row->scheme));
  row->url = NULL;
  row->transactional = -1;
  row->can_prepare = -1;
  row->reachable = false;
  row->in_doubt = row->decisions = row->outbox_pending = row->outbox_dead = -1;
  row->error = error;
}

/** Columns of the status table. */
enum {
  COL_STORE,
  COL_SCHEME,
  COL_REACHABLE,
  COL_PREPARE,
  COL_IN_DOUBT,
  COL_DECISIONS,
  COL_PENDING,
  COL_DEAD,
  COL_URL,
  NCOLS
};

/** Print one cell of a table padded to `width`; the last cell of a row ends the line instead. */
static void print_cell(FILE *out, const char *text, size_t width, bool right, bool last) {
  if (last)
    fprintf(out, "%s\n", text);
  else if (right)
    fprintf(out, "%*s  ", (int)width, text);
  else
    fprintf(out, "%-*s  ", (int)width, text);
}

/** Print the status rows as an aligned table, then one line per store that has a note. */
static void status_print_table(FILE *out, const status_row *rows, size_t n) {
  static const char *const header[NCOLS] = {"STORE",          "SCHEME",      "REACHABLE",
                                            "PREPARE",        "IN-DOUBT",    "DECISIONS",
                                            "OUTBOX-PENDING", "OUTBOX-DEAD", "URL"};
  static const bool right[NCOLS] = {false, false, false, false, true, true, true, true, false};
  size_t width[NCOLS];
  for (int c = 0; c < NCOLS; c++)
    width[c] = strlen(header[c]);

  /* two passes: measure, then print; cells are rebuilt each time */
  for (int pass = 0; pass < 2; pass++) {
    for (int c = 0; pass == 1 && c < NCOLS; c++)
      print_cell(out, header[c], width[c], right[c], c == NCOLS - 1);
    for (size_t r = 0; r < n; r++) {
      const status_row *row = &rows[r];
      char counts[4][24];
      const int64_t values[4] = {row->in_doubt, row->decisions, row->outbox_pending,
                                 row->outbox_dead};
      for (int k = 0; k < 4; k++)
        if (values[k] < 0)
          snprintf(counts[k], sizeof(counts[k]), "?");
        else
          snprintf(counts[k], sizeof(counts[k]), "%" PRId64, values[k]);
      const char *cell[NCOLS] = {
          row->name,
          row->scheme,
          row->reachable ? "yes" : "no",
          row->can_prepare < 0 ? "?"
          : row->can_prepare   ? "yes"
                               : "no",
          counts[0],
          counts[1],
          counts[2],
          counts[3],
          row->url ? row->url : "-",
      };
      for (int c = 0; c < NCOLS; c++) {
        if (pass == 0) {
          size_t len = strlen(cell[c]);
          if (len > width[c])
            width[c] = len;
        } else {
          print_cell(out, cell[c], width[c], right[c], c == NCOLS - 1);
        }
      }
    }
  }

  bool first = true;
  for (size_t r = 0; r < n; r++) {
    if (!rows[r].error[0])
      continue;
    if (first)
      fputc('\n', out);
    first = false;
    fprintf(out, "%s: ", rows[r].name);
    print_one_line(out, rows[r].error);
    fputc('\n', out);
  }
}

/** Print the status rows as a JSON document. */
static void status_print_json(FILE *out, const status_row *rows, size_t n, bool all_reachable) {
  fputs("{\n  \"stores\": [", out);
  for (size_t r = 0; r < n; r++) {
    const status_row *row = &rows[r];
    fputs(r ? ",\n    {\n" : "\n    {\n", out);
    fputs("      \"name\": ", out);
    json_string(out, row->name);
    fputs(",\n      \"scheme\": ", out);
    json_string(out, row->scheme);
    fputs(",\n      \"url\": ", out);
    json_string(out, row->url);
    fputs(",\n      \"reachable\": ", out);
    json_bool(out, row->reachable);
    fputs(",\n      \"transactional\": ", out);
    json_bool(out, row->transactional);
    fputs(",\n      \"can_prepare\": ", out);
    json_bool(out, row->can_prepare);
    fputs(",\n      \"in_doubt\": ", out);
    json_count(out, row->in_doubt);
    fputs(",\n      \"decisions\": ", out);
    json_count(out, row->decisions);
    fputs(",\n      \"outbox_pending\": ", out);
    json_count(out, row->outbox_pending);
    fputs(",\n      \"outbox_dead\": ", out);
    json_count(out, row->outbox_dead);
    fputs(",\n      \"error\": ", out);
    if (row->error[0])
      json_string_n(out, row->error, trimmed_length(row->error));
    else
      fputs("null", out);
    fputs("\n    }", out);
  }
  fprintf(out, "%s],\n  \"all_reachable\": %s\n}\n", n ? "\n  " : "",
          all_reachable ? "true" : "false");
}

/**
 * `uowctl status`: add every store (a store that cannot be opened is shown as
 * unreachable with the library's message), ask uow_env_status() and print.
 * @return UOWCTL_EXIT_OK when every store is reachable, else UOWCTL_EXIT_FAILED.
 */
static int cmd_status(const ctl_config *config, bool json) {
  int exit_code = UOWCTL_EXIT_FAILED;
  uow_env *env = NULL;
  char **failures = NULL;
  uow_store_status *statuses = NULL;
  status_row *rows = NULL;

  int rc = env_open(config, &env);
  if (rc) {
    print_failure(env, rc);
    goto done;
  }
  failures = calloc(config->nstores, sizeof(*failures));
  rows = calloc(config->nstores, sizeof(*rows));
  if (!failures || !rows)
    goto oom;
  for (size_t i = 0; i < config->nstores; i++) {
    rc = uow_env_add_store(env, config->stores[i].name, config->stores[i].url);
    if (rc) {
      const char *msg = env_message(env, rc);
      if (!(failures[i] = copy_string(msg, strlen(msg))))
        goto oom;
    }
  }

  size_t count = 0;
  rc = uow_env_status(env, NULL, 0, &count);
  if (!rc && count) {
    if (!(statuses = calloc(count, sizeof(*statuses))))
      goto oom;
    rc = uow_env_status(env, statuses, count, &count);
  }
  if (rc) {
    print_failure(env, rc);
    goto done;
  }

  bool all_reachable = true;
  for (size_t i = 0, next = 0; i < config->nstores; i++) {
    status_row *row = &rows[i];
    if (failures[i]) {
      row_from_failure(row, &config->stores[i], failures[i]);
    } else if (next < count && strcmp(statuses[next].name, config->stores[i].name) == 0) {
      row_from_status(row, &statuses[next++]);
    } else {
      row_from_failure(row, &config->stores[i], "the environment did not report this store");
    }
    all_reachable = all_reachable && row->reachable;
  }
  if (json)
    status_print_json(stdout, rows, config->nstores, all_reachable);
  else
    status_print_table(stdout, rows, config->nstores);
  exit_code = all_reachable ? UOWCTL_EXIT_OK : UOWCTL_EXIT_FAILED;
  goto done;

oom:
  fputs("uowctl: out of memory\n", stderr);
done:
  for (size_t i = 0; failures && i < config->nstores; i++)
    free(failures[i]);
  free(failures);
  free(rows);
  free(statuses);
  uow_env_close(env);
  return exit_code;
}

/* ---- recover ---- */

/** Print what uow_recover() did, as text or JSON; `error` is NULL on success. */
static void recover_print(FILE *out, const uow_recover_report *report, const char *error,
                          bool json) {
  static const char *const names[] = {"in_doubt", "committed",         "rolled_back",
                                      "fenced",   "decisions_removed", "skipped"};
  static const char *const labels[] = {
      "in-doubt units found",     "committed", "rolled back", "abort records written",
      "decision records removed", "skipped"};
  const size_t values[] = {report->in_doubt, report->committed,         report->rolled_back,
                           report->fenced,   report->decisions_removed, report->skipped};
  if (json) {
    fprintf(out, "{\n  \"ok\": %s,\n", error ? "false" : "true");
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
      fprintf(out, "  \"%s\": %zu,\n", names[i], values[i]);
    fputs("  \"error\": ", out);
    if (error)
      json_string_n(out, error, trimmed_length(error));
    else
      fputs("null", out);
    fputs("\n}\n", out);
    return;
  }
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
    fprintf(out, "%-26s%zu\n", labels[i], values[i]);
}

/**
 * `uowctl recover`: add every store and run uow_recover().
 * @return UOWCTL_EXIT_OK when every unit found was settled, else UOWCTL_EXIT_FAILED
 *         with the library's message on stderr.
 */
static int cmd_recover(const ctl_config *config, bool json) {
  uow_env *env = NULL;
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  int rc = env_setup(config, &env);
  if (rc) {
    if (json)
      recover_print(stdout, &report, env_message(env, rc), true);
    uow_env_close(env);
    return UOWCTL_EXIT_FAILED;
  }
  rc = uow_recover(env, &report);
  const char *error = rc ? env_message(env, rc) : NULL;
  recover_print(stdout, &report, error, json);
  if (rc)
    print_failure(env, rc);
  uow_env_close(env);
  return rc ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_OK;
}

/* ---- schema ---- */

/**
 * `uowctl schema`: add every store and run uow_env_create_schema(), which
 * creates the library's own tables where they are missing.
 * @return UOWCTL_EXIT_OK or UOWCTL_EXIT_FAILED (message on stderr).
 */
static int cmd_schema(const ctl_config *config, bool json) {
  (void)json;
  uow_env *env = NULL;
  int rc = env_setup(config, &env);
  if (!rc) {
    rc = uow_env_create_schema(env);
    if (rc) {
      print_failure(env, rc);
    } else {
      printf("schema: libuow's tables are in place in %zu store%s:", config->nstores,
             config->nstores == 1 ? "" : "s");
      for (size_t i = 0; i < config->nstores; i++)
        printf(" %s", config->stores[i].name);
      putchar('\n');
    }
  }
  uow_env_close(env);
  return rc ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_OK;
}

/* ---- command line ---- */

/** A command: its name, help and what runs it. */
typedef struct ctl_command {
  const char *name;
  const char *summary; /* one line for `uowctl --help` */
  const char *help;    /* the whole text of `uowctl NAME --help` */
  bool takes_json;     /* accepts --json */
  int (*run)(const ctl_config *config, bool json);
} ctl_command;

static const ctl_command commands[] = {
    {"status", "show every store: reachable, in-doubt units, outbox backlog",
     "Usage: uowctl [-c FILE] status [--json]\n"
     "\n"
     "Show every store of the configuration file: its scheme, its URL (with any\n"
     "password hidden), whether it is reachable and can prepare (take part in a\n"
     "multi-store unit), the units in doubt waiting for 'uowctl recover', the\n"
     "decision records it holds, and the outbox rows pending and dead.\n"
     "A count that cannot be read (say, the library's tables do not exist yet:\n"
     "run 'uowctl schema') shows as '?' (null in JSON), with a note below.\n"
     "\n"
     "Options:\n"
     "  --json             print a JSON document instead of a table\n"
     "  -c, --config FILE  configuration file\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: 0 every store is reachable, 1 some store is not, 2 usage or\n"
     "configuration error.\n",
     true, cmd_status},
    {"recover", "settle units left in doubt by a crash (uow_recover)",
     "Usage: uowctl [-c FILE] recover [--json]\n"
     "\n"
     "Settle every multi-store unit that a crash or an outage left in doubt: a\n"
     "prepared transaction whose decider holds the commit decision is committed,\n"
     "one without it is fenced with an abort record and rolled back. Finished\n"
     "decision records are removed. Safe to run at any time, also while the\n"
     "application runs; every store taking part in multi-store units must be in\n"
     "the configuration file. Prints what was done.\n"
     "\n"
     "Options:\n"
     "  --json             print a JSON document instead of text\n"
     "  -c, --config FILE  configuration file\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: 0 every unit found was settled, 1 something failed (the\n"
     "message says what; run it again), 2 usage or configuration error.\n",
     true, cmd_recover},
    {"schema", "create libuow's own tables (outbox, decision records)",
     "Usage: uowctl [-c FILE] schema\n"
     "\n"
     "Create the library's own tables (the outbox and the decision records) in\n"
     "every store of the configuration file that can hold them, where they do\n"
     "not exist yet. The application's tables are left alone.\n"
     "\n"
     "Options:\n"
     "  -c, --config FILE  configuration file\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: 0 done, 1 a store failed, 2 usage or configuration error.\n",
     false, cmd_schema},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/** Print the help of uowctl itself. */
static void print_main_help(FILE *out) {
  fputs("Usage: uowctl [-c FILE] COMMAND [OPTIONS]\n"
        "\n"
        "See and repair the stores of an application that uses libuow.\n"
        "\n"
        "Commands:\n",
        out);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fputs("  help      show the help of a command: uowctl help COMMAND\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE  configuration file (default: $UOWCTL_CONFIG, else\n"
        "                     ./" UOWCTL_DEFAULT_CONFIG ")\n"
        "  -h, --help         show this help\n"
        "      --version      show the version\n"
        "\n"
        "Configuration file:\n"
        "  [env]\n"
        "  pool_size = 4      ; optional: connections kept per store\n"
        "  decider = ledger   ; optional: the store that decides multi-store units\n"
        "  outbox = main      ; optional: the outbox of units that wrote nowhere\n"
        "  [store main]       ; stores are added in file order\n"
        "  url = sqlite:/var/lib/app/app.db\n"
        "  [store ledger]\n"
        "  url = postgresql:///app?host=/run/postgresql\n"
        "\n"
        "Exit status: 0 success, 1 the command failed or a store is unreachable,\n"
        "2 usage or configuration error.\n"
        "Run 'uowctl COMMAND --help' for the options of a command.\n",
        out);
}

/** The command named `name`, or NULL. */
static const ctl_command *find_command(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/** Print "unknown command" with the list of commands. */
static void unknown_command(const char *name) {
  fprintf(stderr, "uowctl: unknown command '%s' (commands:", name);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(stderr, " %s", commands[i].name);
  fputs(", help)\nRun 'uowctl --help' for usage.\n", stderr);
}

/**
 * Take -c FILE, -cFILE, --config FILE or --config=FILE at argv[*i].
 * @return 1 taken (*i moved past it), 0 not a config option, -1 its file is missing
 *         (the message is printed).
 */
static int take_config_option(int argc, char **argv, int *i, const char **path, const char *who) {
  const char *arg = argv[*i];
  const char *value = NULL;
  if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
    if (*i + 1 >= argc) {
      fprintf(stderr, "%s: option '%s' needs a file name\n", who, arg);
      return -1;
    }
    value = argv[++*i];
  } else if (strncmp(arg, "--config=", 9) == 0) {
    value = arg + 9;
  } else if (strncmp(arg, "-c", 2) == 0) {
    value = arg + 2;
  } else {
    return 0;
  }
  if (!*value) {
    fprintf(stderr, "%s: option '%s' needs a file name\n", who, arg);
    return -1;
  }
  *path = value;
  return 1;
}

/** Whether `arg` asks for help. */
static bool is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

/** `uowctl help [COMMAND]`. */
static int run_help(int argc, char **argv, int i) {
  if (i >= argc) {
    print_main_help(stdout);
    return UOWCTL_EXIT_OK;
  }
  if (i + 1 < argc) {
    fprintf(stderr, "uowctl help: unexpected argument '%s'\n", argv[i + 1]);
    return UOWCTL_EXIT_USAGE;
  }
  if (strcmp(argv[i], "help") == 0 || is_help(argv[i])) {
    print_main_help(stdout);
    return UOWCTL_EXIT_OK;
  }
  const ctl_command *command = find_command(argv[i]);
  if (!command) {
    unknown_command(argv[i]);
    return UOWCTL_EXIT_USAGE;
  }
  fputs(command->help, stdout);
  return UOWCTL_EXIT_OK;
}

/** Parse the command line, read the configuration and run the command. */
static int run(int argc, char **argv) {
  const char *config_path = NULL;
  int i = 1;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-' || arg[1] == '\0')
      break;
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    int taken = take_config_option(argc, argv, &i, &config_path, "uowctl");
    if (taken < 0)
      return UOWCTL_EXIT_USAGE;
    if (taken)
      continue;
    if (is_help(arg)) {
      print_main_help(stdout);
      return UOWCTL_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0) {
      printf("uowctl (libuow) %s\n", UOW_VERSION_STRING);
      return UOWCTL_EXIT_OK;
    }
    fprintf(stderr, "uowctl: unknown option '%s'\nRun 'uowctl --help' for usage.\n", arg);
    return UOWCTL_EXIT_USAGE;
  }
  if (i >= argc) {
    fputs("uowctl: no command given\nRun 'uowctl --help' for usage.\n", stderr);
    return UOWCTL_EXIT_USAGE;
  }
  const char *name = argv[i++];
  if (strcmp(name, "help") == 0)
    return run_help(argc, argv, i);
  const ctl_command *command = find_command(name);
  if (!command) {
    unknown_command(name);
    return UOWCTL_EXIT_USAGE;
  }

  char who[32];
  snprintf(who, sizeof(who), "uowctl %s", command->name);
  bool json = false;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    int taken = take_config_option(argc, argv, &i, &config_path, who);
    if (taken < 0)
      return UOWCTL_EXIT_USAGE;
    if (taken)
      continue;
    if (is_help(arg)) {
      fputs(command->help, stdout);
      return UOWCTL_EXIT_OK;
    }
    if (command->takes_json && strcmp(arg, "--json") == 0) {
      json = true;
      continue;
    }
    if (arg[0] == '-')
      fprintf(stderr, "%s: unknown option '%s'\n", who, arg);
    else
      fprintf(stderr, "%s: unexpected argument '%s'\n", who, arg);
    fprintf(stderr, "Run 'uowctl %s --help' for usage.\n", command->name);
    return UOWCTL_EXIT_USAGE;
  }

  bool given = config_path != NULL;
  if (!config_path) {
    const char *from_env = getenv("UOWCTL_CONFIG");
    config_path = from_env && *from_env ? from_env : UOWCTL_DEFAULT_CONFIG;
    given = from_env && *from_env;
  }
  ctl_config config;
  int rc = config_load(config_path, given, &config);
  if (rc)
    return rc;
  rc = command->run(&config, json);
  config_free(&config);
  return rc;
}

/** uowctl's entry point: run(), then make sure everything printed reached stdout. */
int main(int argc, char **argv) {
  int rc = run(argc, argv);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "uowctl: cannot write the output: %s\n", strerror(errno));
    if (rc == UOWCTL_EXIT_OK)
      rc = UOWCTL_EXIT_FAILED;
  }
  return rc;
}
