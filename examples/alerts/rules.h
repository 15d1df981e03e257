/*
 * rules.h - the alerts example's domain: threshold rules ("cpu_high: cpu > 90
 * for 3 samples"), the samples they watch, the alerts they raise, and the
 * evaluation of one window of samples as one unit of work. alerts.c is the
 * program around it; test_rules.c tests it on an in-memory SQLite store.
 */
#ifndef ALERTS_RULES_H
#define ALERTS_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "uow.h"

enum { NAME_MAX_LEN = 32 };

typedef enum rule_op { RULE_ABOVE, RULE_BELOW } rule_op;

/* A rule fires when `for_samples` samples in a row of `metric` are past `threshold`. */
typedef struct rule {
  char name[NAME_MAX_LEN];
  char metric[NAME_MAX_LEN];
  rule_op op;
  double threshold;
  int64_t for_samples;
} rule;

/* One line of a metrics file: `timestamp metric value`. */
typedef struct sample {
  int64_t at; /* seconds since the epoch */
  char metric[NAME_MAX_LEN];
  double value;
} sample;

/* An alert, a row of table `alerts`. `state` is "open" or "resolved". */
typedef struct alert {
  int64_t id;
  char *rule;
  char *metric;
  double value; /* the sample that raised it */
  int64_t raised_at;
  char *state;
  int64_t resolved_at; /* 0 while open */
  int64_t version;
} alert;
extern const uow_entity alert_entity;

/* How many samples in a row each rule has seen past its threshold, across windows. */
typedef struct rule_state {
  char *rule;
  int64_t streak;
  int64_t last_at;
  int64_t version;
} rule_state;
extern const uow_entity rule_state_entity;

/* Parse "NAME: METRIC > THRESHOLD for N samples" (or <). 0, or -1 when malformed. */
int rule_parse(const char *text, rule *out);

/* Parse "TIMESTAMP METRIC VALUE". 0, or -1 when malformed. */
int sample_parse(const char *line, sample *out);

/* Whether `value` is past the rule's threshold. */
bool rule_breached_by(const rule *r, double value);

/* The streak after one more sample: one longer when breached, else 0. */
int64_t rule_next_streak(const rule *r, int64_t streak, double value);

/* Whether a streak is long enough for the rule to fire. */
bool rule_fires(const rule *r, int64_t streak);

/* Map the entities above to `store`. */
int alerts_map(uow_env *env, const char *store);

/* What evaluate_window() changed. */
typedef struct window_report {
  size_t samples; /* samples some rule watched */
  size_t raised;
  size_t resolved;
} window_report;

/*
 * Feed a window of samples, in time order, to the rules within `unit`: keep
 * each rule's streak, raise an alert (and emit `alert.raised`) when a rule
 * fires and has no open alert, resolve the open alert (and emit
 * `alert.resolved`) when its metric is back within the threshold.
 * Returns 0 or a UOW_E* code; the caller commits or rolls back.
 */
int evaluate_window(uow_unit *unit, const rule *rules, size_t nrules, const sample *samples,
                    size_t n, window_report *report);

#endif
