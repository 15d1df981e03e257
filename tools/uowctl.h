/*
 * uowctl.h - what the parts of uowctl share: the configuration file
 * (uowctl_config.c), the command table and its options (uowctl.c, which also
 * holds status, recover and schema), the environment helpers, and the outbox
 * commands relay and requeue (uowctl_relay.c). Not installed; not part of
 * libuow's API.
 */
#ifndef UOWCTL_H
#define UOWCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "uow.h"

/* ---- exit statuses ---- */

/** Everything worked (and, for status, every store is reachable). */
#define UOWCTL_EXIT_OK 0
/** The command failed, or status found a store it cannot reach. */
#define UOWCTL_EXIT_FAILED 1
/** Bad command line or bad configuration file. */
#define UOWCTL_EXIT_USAGE 2

#if defined(__GNUC__)
#define UOWCTL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define UOWCTL_PRINTF(fmt, args)
#endif

/* ---- configuration (uowctl_config.c) ---- */

/** One [store NAME] section. */
typedef struct ctl_store {
  char *name; /* owned */
  char *url;  /* owned; may hold a password: never print it */
  int line;   /* line of the section header */
} ctl_store;

/** What a configuration file says. Release with ctl_config_free(). */
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

/**
 * Read the configuration file at `path` into `config`. Errors are printed as
 * "uowctl: FILE:LINE: message"; `path_given` says whether the user named the
 * file (otherwise the message says how to).
 * @return UOWCTL_EXIT_OK; UOWCTL_EXIT_USAGE (cannot open or read it, or an
 *         error in it); UOWCTL_EXIT_FAILED (out of memory). `config` holds
 *         nothing to free after a failure.
 */
int ctl_config_load(const char *path, bool path_given, ctl_config *config);

/** Free what a configuration holds (not the struct itself). Accepts NULL. */
void ctl_config_free(ctl_config *config);

/** A heap copy (malloc) of `n` bytes of `s` plus a NUL, or NULL when memory is short. */
char *ctl_copy_string(const char *s, size_t n);

/* ---- command line (uowctl.c) ---- */

/** The sink `uowctl relay` delivers to. */
typedef enum ctl_sink_kind {
  CTL_SINK_NONE,
  CTL_SINK_REDIS_STREAM, /* --redis-stream URL --stream KEY */
  CTL_SINK_COMMAND,      /* --command CMD */
  CTL_SINK_STDOUT        /* --stdout: the command sink running cat */
} ctl_sink_kind;

/** The options of a command line; each command reads the ones it takes. */
typedef struct ctl_args {
  bool json;             /* --json (status, recover) */
  const char *store;     /* --store NAME (relay, requeue); NULL: every store */
  bool once;             /* relay --once */
  unsigned batch;        /* relay --batch; 0: the library's default */
  unsigned max_attempts; /* relay --max-attempts; 0: the library's default */
  double interval;       /* relay --interval, seconds between progress lines */
  ctl_sink_kind sink;
  const char *redis_url; /* --redis-stream; may hold a password: never print it */
  const char *stream;    /* --stream */
  const char *command;   /* --command */
  unsigned seen;         /* options given so far, one bit each (the command's own) */
} ctl_args;

/** A command: its name, help, options and what runs it. */
typedef struct ctl_command {
  const char *name;
  const char *summary; /* one line for `uowctl --help` */
  const char *help;    /* the whole text of `uowctl NAME --help` */
  bool takes_json;     /* accepts --json */
  /**
   * Take the command's own option at argv[*i] (moving *i past a separate
   * value). May be NULL. `who` is "uowctl NAME", for messages.
   * @return 1 taken, 0 not an option of this command, -1 a usage error (printed).
   */
  int (*option)(ctl_args *args, int argc, char **argv, int *i, const char *who);
  /** Check the options as a whole (a required one missing); 0 or -1 (printed). May be NULL. */
  int (*check)(const ctl_args *args, const char *who);
  /** Run the command; returns an exit status. */
  int (*run)(const ctl_config *config, const ctl_args *args);
} ctl_command;

/**
 * Take the option `name` with a value at argv[*i]: `NAME VALUE` or `NAME=VALUE`.
 * @return 1 taken (*value set, *i past it), 0 argv[*i] is not `name`, -1 the
 *         value is missing or empty (printed, prefixed with `who`).
 */
int ctl_take_value(int argc, char **argv, int *i, const char *name, const char **value,
                   const char *who);

/** The commands of uowctl_relay.c. */
extern const ctl_command ctl_relay_command;
extern const ctl_command ctl_requeue_command;

/* ---- the environment (uowctl.c) ---- */

/** The message to show for `rc`: the environment's when there is one, else the code's. */
const char *ctl_env_message(const uow_env *env, int rc);

/** Print the library's message for a failure: "uowctl: message" on one line of stderr. */
void ctl_print_failure(const uow_env *env, int rc);

/** Print a message on one line: line breaks and tabs become spaces, trailing ones go. */
void ctl_print_one_line(FILE *out, const char *s);

/**
 * Open an environment and add every store of `config`, stopping at the first
 * failure, whose message is printed with ctl_print_failure().
 * @return 0 or the library's code; close *env with uow_env_close() either way.
 */
int ctl_env_setup(const ctl_config *config, uow_env **env);

#endif /* UOWCTL_H */
