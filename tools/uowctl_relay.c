/*
 * uowctl_relay.c - the outbox commands of uowctl:
 *
 *   uowctl [-c FILE] relay [OPTIONS] (--redis-stream URL --stream KEY | --command CMD | --stdout)
 *   uowctl [-c FILE] requeue [--store NAME]
 *
 * relay runs the library's relay (uow_relay_run, or uow_relay_once with
 * --once) with one of the library's sinks, and prints a progress line on
 * stderr every --interval seconds and at the end. SIGINT and SIGTERM only set
 * the stop flag that the relay's loop checks, so it finishes the batch in
 * hand, and the sink and the environment are closed as usual. requeue makes
 * dead events pending again (uow_outbox_requeue). Only the public API is used.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uowctl.h"

/** Largest --batch: the library's own limit. */
#define RELAY_MAX_BATCH 1000
/** Largest --max-attempts. */
#define RELAY_MAX_ATTEMPTS 1000000
/** Longest --interval, in seconds. */
#define RELAY_MAX_INTERVAL 86400.0
/** The default --interval, in seconds. */
#define RELAY_DEFAULT_INTERVAL 1.0

/* ---- options ---- */

/** The options of relay and requeue; their bits in ctl_args.seen. */
typedef enum relay_opt {
  OPT_STORE,
  OPT_ONCE,
  OPT_BATCH,
  OPT_MAX_ATTEMPTS,
  OPT_INTERVAL,
  OPT_REDIS_STREAM,
  OPT_STREAM,
  OPT_COMMAND,
  OPT_STDOUT
} relay_opt;

/** One option: its name, whether a value follows, and what it means. */
typedef struct relay_option_spec {
  const char *name;
  bool has_value;
  relay_opt opt;
} relay_option_spec;

static const relay_option_spec relay_options[] = {
    {"--store", true, OPT_STORE},       {"--once", false, OPT_ONCE},
    {"--batch", true, OPT_BATCH},       {"--max-attempts", true, OPT_MAX_ATTEMPTS},
    {"--interval", true, OPT_INTERVAL}, {"--redis-stream", true, OPT_REDIS_STREAM},
    {"--stream", true, OPT_STREAM},     {"--command", true, OPT_COMMAND},
    {"--stdout", false, OPT_STDOUT},
};

static const relay_option_spec requeue_options[] = {
    {"--store", true, OPT_STORE},
};

/** The option that chooses sink `kind`, for messages. */
static const char *sink_option(ctl_sink_kind kind) {
  switch (kind) {
  case CTL_SINK_REDIS_STREAM:
    return "--redis-stream";
  case CTL_SINK_COMMAND:
    return "--command";
  case CTL_SINK_STDOUT:
    return "--stdout";
  default:
    return "?";
  }
}

/** Parse a whole number from `min` to `max`; false when `value` is anything else. */
static bool parse_whole(const char *value, unsigned long min, unsigned long max, unsigned *out) {
  unsigned long n = 0;
  if (!*value)
    return false;
  for (const char *c = value; *c; c++) {
    if (*c < '0' || *c > '9')
      return false;
    n = n * 10 + (unsigned long)(*c - '0');
    if (n > max)
      return false;
  }
  if (n < min)
    return false;
  *out = (unsigned)n;
  return true;
}

/** Parse --interval: seconds above 0, fractions allowed, at most RELAY_MAX_INTERVAL. */
static bool parse_interval(const char *value, double *out) {
  char *end = NULL;
  double seconds = strtod(value, &end);
  if (end == value || *end || !isfinite(seconds) || seconds <= 0 || seconds > RELAY_MAX_INTERVAL)
    return false;
  *out = seconds;
  return true;
}

/** Choose the sink `kind`; -1 (printed) when another one was chosen already. */
static int choose_sink(ctl_args *args, ctl_sink_kind kind, const char *who) {
  if (args->sink != CTL_SINK_NONE) {
    fprintf(stderr, "%s: %s and %s both given: choose one sink\n", who, sink_option(args->sink),
            sink_option(kind));
    return -1;
  }
  args->sink = kind;
  return 0;
}

/** Apply one option of `spec` with its `value` (NULL for a flag); 1 or -1 (printed). */
static int apply_option(ctl_args *args, const relay_option_spec *spec, const char *value,
                        const char *who) {
  switch (spec->opt) {
  case OPT_STORE:
    args->store = value;
    return 1;
  case OPT_ONCE:
    args->once = true;
    return 1;
  case OPT_BATCH:
    if (parse_whole(value, 1, RELAY_MAX_BATCH, &args->batch))
      return 1;
    fprintf(stderr, "%s: --batch must be a whole number from 1 to %d\n", who, RELAY_MAX_BATCH);
    return -1;
  case OPT_MAX_ATTEMPTS:
    if (parse_whole(value, 1, RELAY_MAX_ATTEMPTS, &args->max_attempts))
      return 1;
    fprintf(stderr, "%s: --max-attempts must be a whole number from 1 to %d\n", who,
            RELAY_MAX_ATTEMPTS);
    return -1;
  case OPT_INTERVAL:
    if (parse_interval(value, &args->interval))
      return 1;
    fprintf(stderr, "%s: --interval must be a number of seconds above 0 (at most %.0f)\n", who,
            RELAY_MAX_INTERVAL);
    return -1;
  case OPT_REDIS_STREAM:
    args->redis_url = value;
    return choose_sink(args, CTL_SINK_REDIS_STREAM, who) ? -1 : 1;
  case OPT_STREAM:
    args->stream = value;
    return 1;
  case OPT_COMMAND:
    args->command = value;
    return choose_sink(args, CTL_SINK_COMMAND, who) ? -1 : 1;
  case OPT_STDOUT:
    return choose_sink(args, CTL_SINK_STDOUT, who) ? -1 : 1;
  }
  return -1;
}

/**
 * Take one of the `n` options of `specs` at argv[*i]; an option given twice
 * is refused.
 * @return 1 taken, 0 not one of them, -1 a usage error (printed).
 */
static int take_option(const relay_option_spec *specs, size_t n, ctl_args *args, int argc,
                       char **argv, int *i, const char *who) {
  for (size_t k = 0; k < n; k++) {
    const relay_option_spec *spec = &specs[k];
    const char *value = NULL;
    if (spec->has_value) {
      int taken = ctl_take_value(argc, argv, i, spec->name, &value, who);
      if (taken < 0)
        return -1;
      if (taken == 0)
        continue;
    } else if (strcmp(argv[*i], spec->name) != 0) {
      continue;
    }
    unsigned bit = 1u << spec->opt;
    if (args->seen & bit) {
      fprintf(stderr, "%s: option '%s' is given twice\n", who, spec->name);
      return -1;
    }
    args->seen |= bit;
    return apply_option(args, spec, value, who);
  }
  return 0;
}

/** relay's options (ctl_command.option). */
static int relay_option(ctl_args *args, int argc, char **argv, int *i, const char *who) {
  return take_option(relay_options, sizeof(relay_options) / sizeof(relay_options[0]), args, argc,
                     argv, i, who);
}

/** requeue's options (ctl_command.option). */
static int requeue_option(ctl_args *args, int argc, char **argv, int *i, const char *who) {
  return take_option(requeue_options, sizeof(requeue_options) / sizeof(requeue_options[0]), args,
                     argc, argv, i, who);
}

/** relay's options as a whole: exactly one sink, and --stream exactly with --redis-stream. */
static int relay_check(const ctl_args *args, const char *who) {
  if (args->sink == CTL_SINK_NONE && !args->stream) {
    fprintf(stderr,
            "%s: no sink: give --redis-stream URL --stream KEY, --command CMD or --stdout\n", who);
    return -1;
  }
  if (args->sink == CTL_SINK_REDIS_STREAM && !args->stream) {
    fprintf(stderr, "%s: --redis-stream needs --stream KEY\n", who);
    return -1;
  }
  if (args->sink != CTL_SINK_REDIS_STREAM && args->stream) {
    fprintf(stderr, "%s: --stream goes with --redis-stream URL only\n", who);
    return -1;
  }
  return 0;
}

/* ---- progress ---- */

/** What the progress lines need between passes. */
typedef struct relay_progress {
  const uow_env *env;
  double interval;           /* seconds between lines */
  struct timespec last_line; /* when the last line was printed (or the relay started) */
  uint64_t last_delivered;   /* stats.delivered then */
  uow_relay_stats stats;     /* the latest totals */
  char last_error[512];      /* the last library message printed */
} relay_progress;

/** Seconds from `since` to now, on the monotonic clock. */
static double seconds_since(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/** Start counting the progress of a relay on `env`: a line every `interval` seconds. */
static void progress_init(relay_progress *p, const uow_env *env, double interval) {
  memset(p, 0, sizeof(*p));
  p->env = env;
  p->interval = interval;
  p->stats.backlog = -1;
  clock_gettime(CLOCK_MONOTONIC, &p->last_line);
  /* a message left from setting up is not news */
  snprintf(p->last_error, sizeof(p->last_error), "%s", uow_env_errmsg(env));
}

/**
 * Print the progress line of p->stats on stderr; the rate is over the time
 * since the last line.
 */
static void progress_print(relay_progress *p) {
  const uow_relay_stats *s = &p->stats;
  double elapsed = seconds_since(&p->last_line);
  double rate = elapsed > 0 ? (double)(s->delivered - p->last_delivered) / elapsed : 0;
  char backlog[24];
  if (s->backlog < 0)
    snprintf(backlog, sizeof(backlog), "?");
  else
    snprintf(backlog, sizeof(backlog), "%" PRId64, s->backlog);
  fprintf(stderr,
          "delivered %" PRIu64 " (%.1f/s)  retried %" PRIu64 "  dead %" PRIu64 "  purged %" PRIu64
          "  backlog %s\n",
          s->delivered, rate, s->retried, s->dead, s->purged, backlog);
  clock_gettime(CLOCK_MONOTONIC, &p->last_line);
  p->last_delivered = s->delivered;
}

/*
 * The stop flag, set by the signal handler and read by uow_relay_run(), which
 * takes a `const volatile int *`: this compiles only where sig_atomic_t is
 * int, the one type a handler may portably write.
 */
static volatile sig_atomic_t relay_stop;

static void request_stop(int sig) {
  (void)sig;
  relay_stop = 1;
}

/**
 * After each pass of uow_relay_run(): keep the totals, print a store's
 * failure once (the relay tries the store again on the next pass), and a
 * progress line when the interval has passed.
 */
static int on_pass(void *arg, const uow_relay_stats *stats) {
  relay_progress *p = arg;
  p->stats = *stats;
  const char *msg = uow_env_errmsg(p->env);
  if (*msg && strncmp(msg, p->last_error, sizeof(p->last_error) - 1) != 0) {
    snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
    fputs("uowctl: ", stderr);
    ctl_print_one_line(stderr, msg);
    fputc('\n', stderr);
  }
  if (seconds_since(&p->last_line) >= p->interval)
    progress_print(p);
  return relay_stop;
}

/* ---- relay ---- */

/** Make the sink that `args` chose. Its failure is printed. @return 0 or the library's code. */
static int open_sink(const ctl_args *args, uow_sink *sink) {
  int rc;
  switch (args->sink) {
  case CTL_SINK_REDIS_STREAM:
    rc = uow_sink_redis_stream(args->redis_url, args->stream, sink);
    break;
  case CTL_SINK_COMMAND:
    rc = uow_sink_command(args->command, sink);
    break;
  default:
    rc = uow_sink_command("cat", sink);
    break;
  }
  if (rc) /* never the URL: it may hold a password */
    fprintf(stderr, "uowctl relay: cannot use %s: %s%s\n", sink_option(args->sink),
            uow_strerror(rc),
            rc == UOW_EINVAL && args->sink == CTL_SINK_REDIS_STREAM
                ? " (expected redis://host:port/db or redis+unix:///path?db=N, and a stream key)"
                : "");
  return rc;
}

/** uow_relay_run() until SIGINT or SIGTERM; the handlers are restored afterwards. */
static int relay_until_stopped(uow_env *env, const uow_sink *sink, const uow_relay_options *opts,
                               relay_progress *progress) {
  struct sigaction stop, old_int, old_term;
  memset(&stop, 0, sizeof(stop));
  stop.sa_handler = request_stop;
  sigemptyset(&stop.sa_mask);
  /* SA_RESTART: the library's own waits (the command sink's child) are not cut
   * short; SA_RESETHAND: a second signal ends a relay stuck in a sink at once. */
  stop.sa_flags = SA_RESTART | SA_RESETHAND;
  relay_stop = 0;
  sigaction(SIGINT, &stop, &old_int);
  sigaction(SIGTERM, &stop, &old_term);
  int rc = uow_relay_run(env, sink, opts, &relay_stop, on_pass, progress);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return rc;
}

/**
 * `uowctl relay`: add every store, make the sink, and relay until stopped
 * (or one pass with --once); a progress line at the end either way.
 * @return UOWCTL_EXIT_OK; UOWCTL_EXIT_FAILED when a store cannot be added,
 *         the sink cannot be made, the options are refused, or (--once) a
 *         store failed, with the library's message on stderr.
 */
static int cmd_relay(const ctl_config *config, const ctl_args *args) {
  uow_env *env = NULL;
  uow_sink sink;
  memset(&sink, 0, sizeof(sink));
  int rc = open_sink(args, &sink);
  if (!rc)
    rc = ctl_env_setup(config, &env);
  if (rc)
    goto done;

  uow_relay_options opts = UOW_RELAY_OPTIONS_INIT;
  opts.store = args->store;
  opts.batch = args->batch;
  opts.max_attempts = args->max_attempts;
  relay_progress progress;
  progress_init(&progress, env, args->interval > 0 ? args->interval : RELAY_DEFAULT_INTERVAL);
  if (args->once)
    rc = uow_relay_once(env, &sink, &opts, &progress.stats);
  else
    rc = relay_until_stopped(env, &sink, &opts, &progress);
  if (rc == UOW_OK || progress.stats.passes > 0) /* not when the options were refused */
    progress_print(&progress);
  if (rc)
    ctl_print_failure(env, rc);

done:
  uow_sink_close(&sink);
  uow_env_close(env);
  return rc ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_OK;
}

/* ---- requeue ---- */

/**
 * `uowctl requeue`: add every store and make its dead events pending again.
 * @return UOWCTL_EXIT_OK or UOWCTL_EXIT_FAILED (message on stderr).
 */
static int cmd_requeue(const ctl_config *config, const ctl_args *args) {
  uow_env *env = NULL;
  uint64_t count = 0;
  int rc = ctl_env_setup(config, &env);
  if (!rc) {
    rc = uow_outbox_requeue(env, args->store, &count);
    if (rc)
      ctl_print_failure(env, rc);
    else
      printf("requeued %" PRIu64 " dead event%s\n", count, count == 1 ? "" : "s");
  }
  uow_env_close(env);
  return rc ? UOWCTL_EXIT_FAILED : UOWCTL_EXIT_OK;
}

/* ---- the commands ---- */

const ctl_command ctl_relay_command = {
    "relay",
    "deliver the outbox to Redis Streams, a command or stdout",
    "Usage: uowctl [-c FILE] relay [OPTIONS] SINK\n"
    "\n"
    "Deliver the outbox: hand the events that units emitted to a sink, at least\n"
    "once and in commit order per key, each with an event id for dropping\n"
    "duplicates. A failed delivery is retried with backoff; after --max-attempts\n"
    "failures the event is set aside as dead (see 'uowctl requeue'). Delivered\n"
    "events are purged after 7 days. Runs until SIGINT or SIGTERM (it finishes\n"
    "the batch in hand; a second signal ends it at once), or one pass with --once.\n"
    "Every --interval seconds, and at the end, a line on stderr:\n"
    "  delivered N (R/s)  retried N  dead N  purged N  backlog N\n"
    "where R is the events delivered per second since the line before.\n"
    "On SQLite one relay at a time works on a store (it holds a lease); on\n"
    "PostgreSQL several relays share the work.\n"
    "\n"
    "Sink (exactly one):\n"
    "  --redis-stream URL --stream KEY\n"
    "                      XADD each event to a Redis stream; URL is\n"
    "                      redis://host:port/db or redis+unix:///path?db=N\n"
    "  --command CMD       run 'sh -c CMD' for each batch with one JSON object\n"
    "                      per event on its stdin; delivered when it exits 0\n"
    "  --stdout            print the events as JSON lines (--command cat)\n"
    "\n"
    "Options:\n"
    "  --store NAME        only this store's outbox (default: every store)\n"
    "  --once              make one pass, then exit\n"
    "  --batch N           events handed to the sink at once, 1 to 1000 (100)\n"
    "  --max-attempts N    failed deliveries before an event is dead (10)\n"
    "  --interval SECONDS  between progress lines (1; fractions allowed)\n"
    "  -c, --config FILE   configuration file\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 stopped by a signal, or the pass worked (--once); 1 a store\n"
    "cannot be opened or (--once) failed, or the sink cannot be made; 2 usage or\n"
    "configuration error.\n",
    false,
    relay_option,
    relay_check,
    cmd_relay};

const ctl_command ctl_requeue_command = {
    "requeue",
    "make dead outbox events pending again",
    "Usage: uowctl [-c FILE] requeue [--store NAME]\n"
    "\n"
    "Make the outbox's dead events (set aside after too many failed deliveries)\n"
    "pending again, with their attempts reset, so that the next relay pass\n"
    "delivers them. Prints how many were requeued.\n"
    "\n"
    "Options:\n"
    "  --store NAME       only this store's outbox (default: every store)\n"
    "  -c, --config FILE  configuration file\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 done, 1 a store failed, 2 usage or configuration error.\n",
    false,
    requeue_option,
    NULL,
    cmd_requeue};
