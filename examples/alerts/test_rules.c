/*
 * test_rules.c - the alerts example's rules: parsing, streaks, and the
 * evaluation of windows on an in-memory SQLite store (`sqlite::memory:`),
 * checking the alerts table and the events a relay delivers. Registered in
 * CTest as example.alerts.<test>.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rules.h"

/* ---- fixture: an environment on an in-memory store ---- */

static int env_setup(void **state) {
  uow_env *env = NULL;
  if (uow_env_open(NULL, &env) || uow_env_add_store(env, "main", "sqlite::memory:") ||
      alerts_map(env, "main") || uow_env_create_schema(env)) {
    uow_env_close(env);
    return -1;
  }
  *state = env;
  return 0;
}

static int env_teardown(void **state) {
  uow_env_close(*state);
  return 0;
}

static rule parsed(const char *text) {
  rule r;
  assert_int_equal(rule_parse(text, &r), 0);
  return r;
}

static const char *const cpu_rule = "cpu_high: cpu > 90 for 3 samples";

/* Evaluate `values` of `metric`, 10 s apart from `at`, as one committed window. */
typedef struct window {
  const rule *rules;
  size_t nrules;
  sample samples[16];
  size_t n;
  window_report report;
} window;

static int evaluate(uow_unit *unit, void *arg) {
  window *w = arg;
  return evaluate_window(unit, w->rules, w->nrules, w->samples, w->n, &w->report);
}

static window_report run_window(uow_env *env, const rule *r, int64_t at, const char *metric,
                                const double *values, size_t n) {
  window w = {r, 1, {{0, "", 0}}, n, {0, 0, 0}};
  assert_true(n <= 16);
  for (size_t i = 0; i < n; i++) {
    w.samples[i].at = at + (int64_t)i * 10;
    snprintf(w.samples[i].metric, sizeof(w.samples[i].metric), "%s", metric);
    w.samples[i].value = values[i];
  }
  assert_int_equal(uow_run(env, evaluate, &w, NULL), 0);
  return w.report;
}

/* Alerts in the store with `state` ("open", "resolved", or NULL for all). */
static size_t count_alerts(uow_env *env, const char *state) {
  uow_unit *unit;
  void **rows;
  size_t n = 0;
  uow_value by_state[] = {uow_text(state)};
  assert_int_equal(uow_begin(env, &unit), 0);
  assert_int_equal(
      uow_find(unit, &alert_entity, state ? "state = ?" : NULL, by_state, state ? 1 : 0, &rows, &n),
      0);
  uow_end(unit);
  return n;
}

/* Events delivered by a relay, recorded as "topic payload" lines. */
typedef struct recorder {
  char lines[8][256];
  size_t n;
} recorder;

static int record(void *ctx, const uow_delivery *events, size_t n, size_t *delivered, char *err,
                  size_t errcap) {
  recorder *r = ctx;
  (void)delivered, (void)err, (void)errcap;
  for (size_t i = 0; i < n && r->n < 8; i++)
    snprintf(r->lines[r->n++], sizeof(r->lines[0]), "%s %.*s", events[i].topic,
             (int)events[i].payload_len, (const char *)events[i].payload);
  return 0;
}

static void deliver_all(uow_env *env, recorder *rec) {
  uow_sink sink = {UOW_SINK_VERSION, "recorder", record, NULL, rec};
  uow_relay_stats stats;
  memset(&stats, 0, sizeof(stats));
  for (int pass = 0; pass < 10 && (pass == 0 || stats.backlog > 0); pass++)
    assert_int_equal(uow_relay_once(env, &sink, NULL, &stats), 0);
  assert_int_equal(stats.backlog, 0);
}

/* ---- parsing ---- */

static void rule_parse_reads_name_metric_operator_threshold_and_samples(void **state) {
  (void)state;
  rule r = parsed("  disk_low : disk_free < 12.5 for 1 sample ");
  assert_string_equal(r.name, "disk_low");
  assert_string_equal(r.metric, "disk_free");
  assert_int_equal(r.op, RULE_BELOW);
  assert_true(r.threshold == 12.5);
  assert_int_equal(r.for_samples, 1);
}

static void rule_parse_rejects_malformed_rules(void **state) {
  (void)state;
  const char *bad[] = {"",
                       "cpu > 90 for 3 samples",
                       "cpu_high: cpu >= 90 for 3 samples",
                       "cpu_high: cpu > 90 for 0 samples",
                       "cpu_high: cpu > nan for 3 samples",
                       "cpu_high: cpu > 90 for 3 minutes",
                       "cpu_high: cpu > 90 for 3 samples and more"};
  rule r;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(rule_parse(bad[i], &r), -1);
}

static void sample_parse_reads_timestamp_metric_and_value(void **state) {
  (void)state;
  sample s;
  assert_int_equal(sample_parse("1700000000 cpu 93.5", &s), 0);
  assert_int_equal(s.at, 1700000000);
  assert_string_equal(s.metric, "cpu");
  assert_true(s.value == 93.5);
  assert_int_equal(sample_parse("1700000000 cpu", &s), -1);
  assert_int_equal(sample_parse("cpu 1700000000 93.5", &s), -1);
  assert_int_equal(sample_parse("1700000000 cpu 93.5 extra", &s), -1);
}

/* ---- streaks, without a store ---- */

static void streak_grows_while_breached_and_restarts_below_threshold(void **state) {
  (void)state;
  rule r = parsed(cpu_rule);
  int64_t streak = 0;
  streak = rule_next_streak(&r, streak, 95);
  streak = rule_next_streak(&r, streak, 91);
  assert_int_equal(streak, 2);
  assert_false(rule_fires(&r, streak));
  assert_int_equal(rule_next_streak(&r, streak, 90), 0); /* equal is not past */
  assert_true(rule_fires(&r, rule_next_streak(&r, streak, 99)));
}

/* ---- windows as units of work ---- */

static void rule_fires_after_three_samples_over_threshold(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {95, 96, 97};
  window_report report = run_window(env, &r, 1000, "cpu", values, 3);
  assert_int_equal(report.raised, 1);
  assert_int_equal(count_alerts(env, "open"), 1);
}

static void rule_does_not_fire_on_two_samples_over_threshold(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {95, 96, 50, 95, 96};
  window_report report = run_window(env, &r, 1000, "cpu", values, 5);
  assert_int_equal(report.raised, 0);
  assert_int_equal(count_alerts(env, NULL), 0);
}

static void below_rule_fires_when_the_value_drops_under_threshold(void **state) {
  uow_env *env = *state;
  rule r = parsed("disk_low: disk_free < 10 for 1 sample");
  const double values[] = {12, 9.5};
  assert_int_equal(run_window(env, &r, 1000, "disk_free", values, 2).raised, 1);
  assert_int_equal(count_alerts(env, "open"), 1);
}

static void samples_of_other_metrics_are_ignored(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {99, 99, 99, 99};
  window_report report = run_window(env, &r, 1000, "mem", values, 4);
  assert_int_equal(report.samples, 0);
  assert_int_equal(count_alerts(env, NULL), 0);
}

static void open_alert_is_not_raised_twice(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {95, 96, 97, 98, 99, 95};
  assert_int_equal(run_window(env, &r, 1000, "cpu", values, 6).raised, 1);
  assert_int_equal(run_window(env, &r, 1060, "cpu", values, 6).raised, 0); /* a later window */
  assert_int_equal(count_alerts(env, NULL), 1);
}

static void streak_carries_over_to_the_next_window(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double two[] = {95, 96}, one[] = {97};
  assert_int_equal(run_window(env, &r, 1000, "cpu", two, 2).raised, 0);
  assert_int_equal(run_window(env, &r, 1060, "cpu", one, 1).raised, 1);
}

static void alert_is_resolved_when_the_metric_recovers_then_raised_anew(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {95, 96, 97, 40, 95, 96, 97};
  window_report report = run_window(env, &r, 1000, "cpu", values, 7);
  assert_int_equal(report.raised, 2);
  assert_int_equal(report.resolved, 1);
  assert_int_equal(count_alerts(env, "resolved"), 1);
  assert_int_equal(count_alerts(env, "open"), 1);
}

static void raised_alert_emits_an_event_with_rule_metric_and_value(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  const double values[] = {95, 96, 97.5, 10};
  run_window(env, &r, 1000, "cpu", values, 4);
  recorder rec = {{{0}}, 0};
  deliver_all(env, &rec);
  assert_int_equal(rec.n, 2);
  assert_string_equal(rec.lines[0],
                      "alert.raised {\"alert_id\":1,\"rule\":\"cpu_high\",\"metric\":\"cpu\","
                      "\"value\":97.5,\"threshold\":90,\"for_samples\":3,\"at\":1020}");
  assert_non_null(strstr(rec.lines[1], "alert.resolved {\"alert_id\":1,"));
}

static void rolled_back_window_leaves_no_alert_no_event_and_no_streak(void **state) {
  uow_env *env = *state;
  rule r = parsed(cpu_rule);
  sample s[3] = {{1000, "cpu", 95}, {1010, "cpu", 96}, {1020, "cpu", 97}};
  window_report report;
  uow_unit *unit;
  assert_int_equal(uow_begin(env, &unit), 0);
  assert_int_equal(evaluate_window(unit, &r, 1, s, 3, &report), 0);
  assert_int_equal(report.raised, 1);
  assert_int_equal(uow_rollback(unit), 0);
  uow_end(unit);
  assert_int_equal(count_alerts(env, NULL), 0);
  recorder rec = {{{0}}, 0};
  deliver_all(env, &rec);
  assert_int_equal(rec.n, 0);
  const double one[] = {98}; /* the streak was rolled back too: one sample is not enough */
  assert_int_equal(run_window(env, &r, 1060, "cpu", one, 1).raised, 0);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rule_parse_reads_name_metric_operator_threshold_and_samples),
      cmocka_unit_test(rule_parse_rejects_malformed_rules),
      cmocka_unit_test(sample_parse_reads_timestamp_metric_and_value),
      cmocka_unit_test(streak_grows_while_breached_and_restarts_below_threshold),
      cmocka_unit_test_setup_teardown(rule_fires_after_three_samples_over_threshold, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(rule_does_not_fire_on_two_samples_over_threshold, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(below_rule_fires_when_the_value_drops_under_threshold,
                                      env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(samples_of_other_metrics_are_ignored, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(open_alert_is_not_raised_twice, env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(streak_carries_over_to_the_next_window, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(alert_is_resolved_when_the_metric_recovers_then_raised_anew,
                                      env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(raised_alert_emits_an_event_with_rule_metric_and_value,
                                      env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(rolled_back_window_leaves_no_alert_no_event_and_no_streak,
                                      env_setup, env_teardown),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
