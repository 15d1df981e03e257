/*
 * alerts - a small monitoring service. It reads metric samples (a file of
 * `timestamp metric value` lines, or a deterministic generated series),
 * evaluates threshold rules such as "cpu_high: cpu > 90 for 3 samples" one
 * window at a time, and for each window, in one unit of work, keeps every
 * rule's streak, records alerts in table `alerts` and emits `alert.raised` /
 * `alert.resolved` events. A rule whose alert is still open does not raise
 * another one, even across runs. Then the relay hands the events to a notify
 * command and the program prints what it delivered.
 *
 *   alerts [--db PATH | --store URL] [--metrics FILE | --generate N] [--rules FILE]
 *          [--window SECONDS] [--notify CMD] [--reset]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

static const char *const default_rules[] = {
    "cpu_high: cpu > 90 for 3 samples",
    "memory_high: mem > 95 for 2 samples",
    "disk_almost_full: disk_free < 10 for 1 sample",
};

enum { MAX_RULES = 64 };

typedef struct samples {
  sample *at;
  size_t n, cap;
} samples;

static int samples_add(samples *s, const sample *one) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    sample *more = realloc(s->at, cap * sizeof(*more));
    if (!more)
      return -1;
    s->at = more;
    s->cap = cap;
  }
  s->at[s->n++] = *one;
  return 0;
}

/* Strip the newline and a comment; true when nothing is left. */
static bool blank(char *line) {
  line[strcspn(line, "#\r\n")] = '\0';
  return line[strspn(line, " \t")] == '\0';
}

static int load_rules(const char *path, rule *rules, size_t *n) {
  *n = 0;
  if (!path) {
    for (size_t i = 0; i < sizeof(default_rules) / sizeof(default_rules[0]); i++)
      if (rule_parse(default_rules[i], &rules[(*n)++]))
        return -1;
    return 0;
  }
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return -1;
  }
  char line[256];
  int rc = 0;
  for (int lineno = 1; rc == 0 && fgets(line, sizeof(line), f); lineno++) {
    if (blank(line))
      continue;
    if (*n == MAX_RULES || rule_parse(line, &rules[*n])) {
      fprintf(stderr, "%s:%d: expected 'NAME: METRIC > THRESHOLD for N samples'\n", path, lineno);
      rc = -1;
    }
    (*n)++;
  }
  fclose(f);
  return rc;
}

static int load_metrics(const char *path, samples *out) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return -1;
  }
  char line[256];
  int rc = 0;
  sample s;
  for (int lineno = 1; rc == 0 && fgets(line, sizeof(line), f); lineno++) {
    if (blank(line))
      continue;
    if (sample_parse(line, &s) || (out->n && s.at < out->at[out->n - 1].at)) {
      fprintf(stderr, "%s:%d: expected 'TIMESTAMP METRIC VALUE' in time order\n", path, lineno);
      rc = -1;
    } else if (samples_add(out, &s)) {
      rc = -1;
    }
  }
  fclose(f);
  return rc;
}

/*
 * N ticks, 10 s apart, each with a cpu, mem and disk_free sample: noise from a
 * fixed-seed generator, a cpu burst every 10 minutes, a short memory spike and
 * a disk that fills up and is cleaned every 1000 s. The same N, the same series.
 */
static int generate_metrics(long ticks, samples *out) {
  uint64_t seed = 42;
  for (long i = 0; i < ticks; i++) {
    double noise[3];
    for (int k = 0; k < 3; k++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      noise[k] = (double)(seed >> 40) / (double)(1u << 24);
    }
    int64_t at = 1700000000 + (int64_t)i * 10;
    bool burst = i % 60 >= 30 && i % 60 < 38, spike = i % 45 == 40 || i % 45 == 41;
    sample tick[3] = {
        {at, "cpu", burst ? 91 + 8 * noise[0] : 35 + 30 * noise[0]},
        {at, "mem", spike ? 96 + 3 * noise[1] : 60 + 20 * noise[1]},
        {at, "disk_free", 50 - (double)(i % 100) * 0.45 + noise[2]},
    };
    for (int k = 0; k < 3; k++)
      if (samples_add(out, &tick[k]))
        return -1;
  }
  return 0;
}

/* ---- evaluation: one unit per window ---- */

typedef struct window {
  const rule *rules;
  size_t nrules;
  const sample *samples;
  size_t n;
  window_report report;
} window;

static int evaluate(uow_unit *unit, void *arg) {
  window *w = arg;
  return evaluate_window(unit, w->rules, w->nrules, w->samples, w->n, &w->report);
}

static int evaluate_all(uow_env *env, const rule *rules, size_t nrules, const samples *all,
                        int64_t seconds) {
  size_t windows = 0, raised = 0, resolved = 0;
  for (size_t first = 0, end; first < all->n; first = end) {
    int64_t bucket = all->at[first].at / seconds;
    for (end = first; end < all->n && all->at[end].at / seconds == bucket;)
      end++;
    window w = {rules, nrules, all->at + first, end - first, {0, 0, 0}};
    int rc = uow_run(env, evaluate, &w, NULL);
    if (rc) {
      fprintf(stderr, "alerts: window at %" PRId64 ": %s\n", bucket * seconds, uow_env_errmsg(env));
      return -1;
    }
    windows++;
    raised += w.report.raised;
    resolved += w.report.resolved;
    if (w.report.raised || w.report.resolved)
      printf("  window %" PRId64 ": %zu samples, %zu raised, %zu resolved\n", bucket * seconds,
             w.report.samples, w.report.raised, w.report.resolved);
  }
  printf("  %zu samples in %zu windows: %zu alerts raised, %zu resolved\n", all->n, windows, raised,
         resolved);
  return 0;
}

static int print_open_alerts(uow_env *env) {
  uow_unit *unit = NULL;
  void **rows;
  size_t n = 0, total = 0;
  int rc = uow_begin(env, &unit);
  if (rc == UOW_OK)
    rc = uow_find(unit, &alert_entity, "state = 'open' ORDER BY id", NULL, 0, &rows, &n);
  for (size_t i = 0; rc == UOW_OK && i < n; i++) {
    alert *a = rows[i];
    printf("  open: alert %" PRId64 " %-16s %s = %.2f since %" PRId64 "\n", a->id, a->rule,
           a->metric, a->value, a->raised_at);
  }
  if (rc == UOW_OK)
    rc = uow_find(unit, &alert_entity, NULL, NULL, 0, &rows, &total);
  if (rc == UOW_OK)
    printf("  %zu alerts open, %zu in table alerts\n", n, total);
  else
    fprintf(stderr, "alerts: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

/* ---- delivery ---- */

/* A sink that hands a batch to the notify command and prints what it took. */
static int notify_and_print(void *ctx, const uow_delivery *events, size_t n, size_t *delivered,
                            char *err, size_t errcap) {
  const uow_sink *notify = ctx;
  int rc = notify->deliver(notify->ctx, events, n, delivered, err, errcap);
  size_t taken = rc == UOW_OK ? n : *delivered;
  for (size_t i = 0; i < taken; i++)
    printf("  notified %-8s %-14s %.*s\n", events[i].event_id, events[i].topic,
           (int)events[i].payload_len, (const char *)events[i].payload);
  if (rc)
    printf("  the notify command failed: %s\n", err);
  return rc;
}

static int deliver(uow_env *env, const char *command) {
  uow_sink notify;
  int rc = uow_sink_command(command, &notify);
  if (rc) {
    fprintf(stderr, "alerts: notify command: %s\n", uow_strerror(rc));
    return -1;
  }
  uow_sink printing = {UOW_SINK_VERSION, "notify", notify_and_print, NULL, &notify};
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  uint64_t before;
  /* A pass sends one event per rule (events of one key go in order), so pass until done. */
  do {
    before = stats.delivered;
    rc = uow_relay_once(env, &printing, NULL, &stats);
  } while (rc == UOW_OK && stats.backlog > 0 && stats.delivered > before);
  uow_sink_close(&notify);
  if (rc) {
    fprintf(stderr, "alerts: deliver: %s\n", uow_env_errmsg(env));
    return -1;
  }
  if (stats.backlog < 0) /* SQLite: the store was skipped, another relay's lease is live */
    printf("  another relay holds the outbox lease (it lasts 30 s): nothing delivered now\n");
  else
    printf("  %" PRIu64 " delivered to `%s`, %" PRIu64 " to retry, %" PRId64 " still pending\n",
           stats.delivered, command, stats.retried, stats.backlog);
  return 0;
}

/* Start from empty tables (for demos and tests on a shared server). */
static int reset(uow_env *env) {
  uow_unit *unit = NULL;
  const char *clear[] = {"DELETE FROM alerts", "DELETE FROM alert_rule_states",
                         "DELETE FROM uow_outbox"};
  int rc = uow_begin(env, &unit);
  for (size_t i = 0; rc == UOW_OK && i < 3; i++)
    rc = uow_exec(unit, "main", clear[i], NULL, 0);
  if (rc == UOW_OK)
    rc = uow_commit(unit);
  if (rc)
    fprintf(stderr, "alerts: reset: %s\n", uow_errmsg(unit));
  uow_end(unit);
  return rc;
}

static void usage(FILE *to) {
  fprintf(to, "usage: alerts [--db PATH | --store URL] [--metrics FILE | --generate N]\n"
              "              [--rules FILE] [--window SECONDS] [--notify CMD] [--reset]\n"
              "  --db PATH         SQLite file (default alerts.db)\n"
              "  --store URL       any store URL instead, e.g. postgresql://...\n"
              "  --metrics FILE    lines 'TIMESTAMP METRIC VALUE', in time order\n"
              "  --generate N      N ticks of generated cpu, mem, disk_free (default 200)\n"
              "  --rules FILE      lines 'NAME: METRIC > THRESHOLD for N samples' (or <)\n"
              "  --window SECONDS  samples evaluated per unit of work (default 60)\n"
              "  --notify CMD      gets the events as JSON lines on stdin\n"
              "                    (default: cat >> alerts-notify.log)\n"
              "  --reset           start from empty alert tables and an empty outbox\n");
}

int main(int argc, char **argv) {
  const char *db = "alerts.db", *store = NULL, *metrics = NULL, *rules_file = NULL;
  const char *notify = "cat >> alerts-notify.log";
  long ticks = 200, seconds = 60;
  bool do_reset = false;
  for (int i = 1; i < argc; i++) {
    bool has_value = i + 1 < argc;
    if (strcmp(argv[i], "--db") == 0 && has_value)
      db = argv[++i];
    else if (strcmp(argv[i], "--store") == 0 && has_value)
      store = argv[++i];
    else if (strcmp(argv[i], "--metrics") == 0 && has_value)
      metrics = argv[++i];
    else if (strcmp(argv[i], "--generate") == 0 && has_value)
      ticks = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--rules") == 0 && has_value)
      rules_file = argv[++i];
    else if (strcmp(argv[i], "--window") == 0 && has_value)
      seconds = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--notify") == 0 && has_value)
      notify = argv[++i];
    else if (strcmp(argv[i], "--reset") == 0)
      do_reset = true;
    else {
      usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
      return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (ticks < 0 || ticks > 1000000 || seconds < 1) {
    usage(stderr);
    return 2;
  }

  rule rules[MAX_RULES];
  size_t nrules;
  samples all = {NULL, 0, 0};
  if (load_rules(rules_file, rules, &nrules) ||
      (metrics ? load_metrics(metrics, &all) : generate_metrics(ticks, &all))) {
    free(all.at);
    return 2;
  }

  char url[1100];
  if (store)
    snprintf(url, sizeof(url), "%s", store);
  else
    snprintf(url, sizeof(url), "sqlite:%s", db);
  uow_env *env = NULL;
  int rc = uow_env_open(NULL, &env);
  if (rc == UOW_OK && (rc = uow_env_add_store(env, "main", url)) == UOW_OK &&
      (rc = alerts_map(env, "main")) == UOW_OK)
    rc = uow_env_create_schema(env);
  if (rc)
    fprintf(stderr, "alerts: %s\n", env ? uow_env_errmsg(env) : uow_strerror(rc));

  if (rc == UOW_OK && do_reset)
    rc = reset(env);
  if (rc == UOW_OK) {
    printf("libuow alerts on %s\n\n1. Rules\n", store ? "the given store" : url);
    for (size_t i = 0; i < nrules; i++)
      printf("  %-16s %s %s %g for %" PRId64 " sample%s\n", rules[i].name, rules[i].metric,
             rules[i].op == RULE_ABOVE ? ">" : "<", rules[i].threshold, rules[i].for_samples,
             rules[i].for_samples == 1 ? "" : "s");
    printf("\n2. Evaluation, one unit of work per %ld s window (%s)\n", seconds,
           metrics ? metrics : "generated samples");
    rc = evaluate_all(env, rules, nrules, &all, seconds);
  }
  if (rc == UOW_OK) {
    printf("\n3. Alerts\n");
    rc = print_open_alerts(env);
  }
  if (rc == UOW_OK) {
    printf("\n4. Delivery: the relay hands the events to the notify command\n");
    rc = deliver(env, notify);
  }
  uow_env_close(env);
  free(all.at);
  return rc ? 1 : 0;
}
