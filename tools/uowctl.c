/*
 * uowctl - the command-line tool of libuow: see the stores of an application
 * (status), settle units that a crash left in doubt (recover), create the
 * library's own tables (schema) and deliver the outbox (relay, requeue: in
 * uowctl_relay.c).
 *
 *   uowctl [-c FILE] status [--json]
 *   uowctl [-c FILE] recover [--json]
 *   uowctl [-c FILE] schema
 *   uowctl [-c FILE] relay [OPTIONS] (--redis-stream URL --stream KEY | --command CMD | --stdout)
 *   uowctl [-c FILE] requeue [--store NAME]
 *
 * This file holds the command line and the first three commands. The stores
 * come from an INI file (uowctl_config.c) and are added to an environment in
 * file order, exactly as the application adds them; from there on only the
 * public API (uow.h) is used, so what uowctl reports is what the
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

#include "uowctl.h"

/** The configuration file read when neither -c nor UOWCTL_CONFIG names one. */
#define UOWCTL_DEFAULT_CONFIG "uowctl.ini"

/* ---- output helpers ---- */

/** Length of `s` without trailing white space (messages from drivers end in newlines). */
static size_t trimmed_length(const char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  return n;
}

/* See uowctl.h. */
void ctl_print_one_line(FILE *out, const char *s) {
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

/* See uowctl.h. */
const char *ctl_env_message(const uow_env *env, int rc) {
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

/* See uowctl.h. */
void ctl_print_failure(const uow_env *env, int rc) {
  fputs("uowctl: ", stderr);
  ctl_print_one_line(stderr, ctl_env_message(env, rc));
  fputc('\n', stderr);
}

/* See uowctl.h. */
int ctl_env_setup(const ctl_config *config, uow_env **env) {
  int rc = env_open(config, env);
  for (size_t i = 0; !rc && i < config->nstores; i++)
    rc = uow_env_add_store(*env, config->stores[i].name, config->stores[i].url);
  if (rc)
    ctl_print_failure(*env, rc);
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
    ctl_print_one_line(out, rows[r].error);
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
static int cmd_status(const ctl_config *config, const ctl_args *args) {
  bool json = args->json;
  int exit_code = UOWCTL_EXIT_FAILED;
  uow_env *env = NULL;
  char **failures = NULL;
  uow_store_status *statuses = NULL;
  status_row *rows = NULL;

  int rc = env_open(config, &env);
  if (rc) {
    ctl_print_failure(env, rc);
    goto done;
  }
  failures = calloc(config->nstores, sizeof(*failures));
  rows = calloc(config->nstores, sizeof(*rows));
  if (!failures || !rows)
    goto oom;
  for (size_t i = 0; i < config->nstores; i++) {
    rc = uow_env_add_store(env, config->stores[i].name, config->stores[i].url);
    if (rc) {
      const char *msg = ctl_env_message(env, rc);
      if (!(failures[i] = ctl_copy_string(msg, strlen(msg))))
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
    ctl_print_failure(env, rc);
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
static int cmd_recover(const ctl_config *config, const ctl_args *args) {
  bool json = args->json;
  uow_env *env = NULL;
  uow_recover_report report = UOW_RECOVER_REPORT_INIT;
  int rc = ctl_env_setup(config, &env);
  if (rc) {
    if (json)
      recover_print(stdout, &report, ctl_env_message(env, rc), true);
    uow_env_close(env);
    return UOWCTL_EXIT_FAILED;
  }
  rc = uow_recover(env, &report);
  const char *error = rc ? ctl_env_message(env, rc) : NULL;
  recover_print(stdout, &report, error, json);
  if (rc)
    ctl_print_failure(env, rc);
  uow_env_close(env);
  return rc ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_OK;
}

/* ---- schema ---- */

/**
 * `uowctl schema`: add every store and run uow_env_create_schema(), which
 * creates the library's own tables where they are missing.
 * @return UOWCTL_EXIT_OK or UOWCTL_EXIT_FAILED (message on stderr).
 */
static int cmd_schema(const ctl_config *config, const ctl_args *args) {
  (void)args;
  uow_env *env = NULL;
  int rc = ctl_env_setup(config, &env);
  if (!rc) {
    rc = uow_env_create_schema(env);
    if (rc) {
      ctl_print_failure(env, rc);
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

static const ctl_command status_command = {
    "status",
    "show every store: reachable, in-doubt units, outbox backlog",
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
    true,
    NULL,
    NULL,
    cmd_status};

static const ctl_command recover_command = {
    "recover",
    "settle units left in doubt by a crash (uow_recover)",
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
    true,
    NULL,
    NULL,
    cmd_recover};

static const ctl_command schema_command = {
    "schema",
    "create libuow's own tables (outbox, decision records)",
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
    false,
    NULL,
    NULL,
    cmd_schema};

/** Every command, in the order `uowctl --help` lists them. */
static const ctl_command *const commands[] = {&status_command, &recover_command, &schema_command,
                                              &ctl_relay_command, &ctl_requeue_command};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/** Print the help of uowctl itself. */
static void print_main_help(FILE *out) {
  fputs("Usage: uowctl [-c FILE] COMMAND [OPTIONS]\n"
        "\n"
        "See and repair the stores of an application that uses libuow, and deliver\n"
        "its outbox.\n"
        "\n"
        "Commands:\n",
        out);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
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
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

/** Print "unknown command" with the list of commands. */
static void unknown_command(const char *name) {
  fprintf(stderr, "uowctl: unknown command '%s' (commands:", name);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(stderr, " %s", commands[i]->name);
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

/* See uowctl.h. */
int ctl_take_value(int argc, char **argv, int *i, const char *name, const char **value,
                   const char *who) {
  const char *arg = argv[*i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '='))
    return 0;
  if (arg[n] == '=') {
    *value = arg + n + 1;
  } else if (*i + 1 < argc) {
    *value = argv[++*i];
  } else {
    *value = "";
  }
  if (!**value) {
    fprintf(stderr, "%s: option '%s' needs a value\n", who, name);
    return -1;
  }
  return 1;
}

/** Point to the command's help after a usage error; returns UOWCTL_EXIT_USAGE. */
static int usage_hint(const ctl_command *command) {
  fprintf(stderr, "Run 'uowctl %s --help' for usage.\n", command->name);
  return UOWCTL_EXIT_USAGE;
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
  ctl_args args;
  memset(&args, 0, sizeof(args));
  for (; i < argc; i++) {
    const char *arg = argv[i];
    int taken = take_config_option(argc, argv, &i, &config_path, who);
    if (!taken && command->option)
      taken = command->option(&args, argc, argv, &i, who);
    if (taken < 0)
      return usage_hint(command);
    if (taken)
      continue;
    if (is_help(arg)) {
      fputs(command->help, stdout);
      return UOWCTL_EXIT_OK;
    }
    if (command->takes_json && strcmp(arg, "--json") == 0) {
      args.json = true;
      continue;
    }
    if (arg[0] == '-')
      fprintf(stderr, "%s: unknown option '%s'\n", who, arg);
    else
      fprintf(stderr, "%s: unexpected argument '%s'\n", who, arg);
    return usage_hint(command);
  }
  if (command->check && command->check(&args, who) < 0)
    return usage_hint(command);

  bool given = config_path != NULL;
  if (!config_path) {
    const char *from_env = getenv("UOWCTL_CONFIG");
    config_path = from_env && *from_env ? from_env : UOWCTL_DEFAULT_CONFIG;
    given = from_env && *from_env;
  }
  ctl_config config;
  int rc = ctl_config_load(config_path, given, &config);
  if (rc)
    return rc;
  rc = command->run(&config, &args);
  ctl_config_free(&config);
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
