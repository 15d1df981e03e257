/*
 * rules.c - threshold rules and the evaluation of a window of samples as one
 * unit of work: streaks, alerts and their events change together or not at
 * all. See rules.h.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"

static const uow_column alert_columns[] = {
    UOW_COLUMN(alert, id, UOW_INT64, UOW_PRIMARY_KEY | UOW_GENERATED),
    UOW_COLUMN(alert, rule, UOW_TEXT, 0),
    UOW_COLUMN(alert, metric, UOW_TEXT, 0),
    UOW_COLUMN(alert, value, UOW_DOUBLE, 0),
    UOW_COLUMN(alert, raised_at, UOW_INT64, 0),
    UOW_COLUMN(alert, state, UOW_TEXT, 0),
    UOW_COLUMN(alert, resolved_at, UOW_INT64, UOW_NULLABLE),
    UOW_COLUMN(alert, version, UOW_INT64, UOW_VERSION),
};
const uow_entity alert_entity = UOW_ENTITY(alert, "alerts", alert_columns);

static const uow_column rule_state_columns[] = {
    UOW_COLUMN(rule_state, rule, UOW_TEXT, UOW_PRIMARY_KEY),
    UOW_COLUMN(rule_state, streak, UOW_INT64, 0),
    UOW_COLUMN(rule_state, last_at, UOW_INT64, 0),
    UOW_COLUMN(rule_state, version, UOW_INT64, UOW_VERSION),
};
const uow_entity rule_state_entity =
    UOW_ENTITY(rule_state, "alert_rule_states", rule_state_columns);

/* ---- the rules themselves: no store involved ---- */

#define NAME_SCAN "%31[A-Za-z0-9_.-]"

int rule_parse(const char *text, rule *out) {
  char op[3], unit[16];
  int end = 0;
  memset(out, 0, sizeof(*out));
  if (sscanf(text, " " NAME_SCAN " : " NAME_SCAN " %2[<>] %lf for %" SCNd64 " %15s %n", out->name,
             out->metric, op, &out->threshold, &out->for_samples, unit, &end) != 6 ||
      text[end] != '\0' || op[1] != '\0' || !isfinite(out->threshold) || out->for_samples < 1 ||
      (strcmp(unit, "samples") != 0 && strcmp(unit, "sample") != 0))
    return -1;
  out->op = op[0] == '>' ? RULE_ABOVE : RULE_BELOW;
  return 0;
}

int sample_parse(const char *line, sample *out) {
  int end = 0;
  memset(out, 0, sizeof(*out));
  if (sscanf(line, "%" SCNd64 " " NAME_SCAN " %lf %n", &out->at, out->metric, &out->value, &end) !=
          3 ||
      line[end] != '\0' || !isfinite(out->value))
    return -1;
  return 0;
}

bool rule_breached_by(const rule *r, double value) {
  return r->op == RULE_ABOVE ? value > r->threshold : value < r->threshold;
}

int64_t rule_next_streak(const rule *r, int64_t streak, double value) {
  return rule_breached_by(r, value) ? streak + 1 : 0;
}

bool rule_fires(const rule *r, int64_t streak) { return streak >= r->for_samples; }

int alerts_map(uow_env *env, const char *store) {
  int rc = uow_env_map(env, &alert_entity, store);
  return rc ? rc : uow_env_map(env, &rule_state_entity, store);
}

/* ---- the repository: small functions over the unit ---- */

static int rule_state_load(uow_unit *unit, const rule *r, rule_state **out) {
  const char *key = r->name;
  int rc = uow_get(unit, &rule_state_entity, &key, (void **)out);
  if (rc != UOW_ENOTFOUND)
    return rc;
  if ((rc = uow_new(unit, &rule_state_entity, (void **)out)))
    return rc;
  if (!((*out)->rule = uow_strdup(unit, r->name)))
    return UOW_ENOMEM;
  return uow_flush(unit); /* uow_get finds a new object by its key only once it is flushed */
}

/* `*out` is NULL when the rule has no open alert. */
static int alert_find_open(uow_unit *unit, const rule *r, alert **out) {
  uow_value by_rule[] = {uow_text(r->name)};
  void **rows;
  size_t n;
  int rc = uow_find(unit, &alert_entity, "rule = ? AND state = 'open'", by_rule, 1, &rows, &n);
  *out = rc == UOW_OK && n > 0 ? rows[0] : NULL;
  return rc;
}

static int emit_alert_event(uow_unit *unit, const char *topic, const rule *r, const alert *a,
                            const sample *s) {
  char payload[512];
  int len = snprintf(payload, sizeof(payload),
                     "{\"alert_id\":%" PRId64 ",\"rule\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,"
                     "\"threshold\":%.6g,\"for_samples\":%" PRId64 ",\"at\":%" PRId64 "}",
                     a->id, r->name, r->metric, s->value, r->threshold, r->for_samples, s->at);
  return uow_emit(unit, topic, r->name, payload, (size_t)len);
}

static int alert_raise(uow_unit *unit, const rule *r, const sample *s) {
  alert *a;
  int rc = uow_new(unit, &alert_entity, (void **)&a);
  if (rc)
    return rc;
  a->rule = uow_strdup(unit, r->name);
  a->metric = uow_strdup(unit, r->metric);
  a->state = "open";
  a->value = s->value;
  a->raised_at = s->at;
  if (!a->rule || !a->metric)
    return UOW_ENOMEM;
  if ((rc = uow_flush(unit))) /* the event carries the alert's id */
    return rc;
  return emit_alert_event(unit, "alert.raised", r, a, s);
}

static int alert_resolve(uow_unit *unit, const rule *r, alert *a, const sample *s) {
  a->state = "resolved";
  a->resolved_at = s->at;
  return emit_alert_event(unit, "alert.resolved", r, a, s);
}

/* ---- the evaluation ---- */

static int apply_sample(uow_unit *unit, const rule *r, const sample *s, window_report *report) {
  rule_state *state;
  alert *open;
  int rc = rule_state_load(unit, r, &state);
  if (rc)
    return rc;
  state->streak = rule_next_streak(r, state->streak, s->value);
  state->last_at = s->at;
  bool fires = rule_fires(r, state->streak);
  if (!fires && state->streak > 0) /* breached, not for long enough yet */
    return UOW_OK;
  if ((rc = alert_find_open(unit, r, &open)))
    return rc;
  if (fires && !open) {
    report->raised++;
    return alert_raise(unit, r, s);
  }
  if (!fires && open) {
    report->resolved++;
    return alert_resolve(unit, r, open, s);
  }
  return UOW_OK; /* still firing with its alert open, or quiet without one */
}

int evaluate_window(uow_unit *unit, const rule *rules, size_t nrules, const sample *samples,
                    size_t n, window_report *report) {
  memset(report, 0, sizeof(*report));
  for (size_t i = 0; i < n; i++) {
    bool watched = false;
    for (size_t k = 0; k < nrules; k++) {
      if (strcmp(rules[k].metric, samples[i].metric) != 0)
        continue;
      watched = true;
      int rc = apply_sample(unit, &rules[k], &samples[i], report);
      if (rc)
        return rc;
    }
    report->samples += watched;
  }
  return UOW_OK;
}
