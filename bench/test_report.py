#!/usr/bin/env python3
"""test_report.py - checks that bench/report.py pairs each libuow figure with
the fastest raw C figure of the same round. Run by CTest (bench/CMakeLists.txt)."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

# Three rounds of W1 on SQLite and of W3 on PostgreSQL, two of W2 and W4. The
# best runs (libuow 1,000 rows/s and sqlite-c 1,250, both of round 1) give
# 1.25x; round by round libuow takes 1.25x, 1.05x and 1.10x the reference's
# time. On W4 libuow takes twice and 1.67 times raw 2PC's time.
RESULTS = """\
result libuow W1 sqlite 1000 rows/s
result sqlite-c W1 sqlite 1250 rows/s
result libuow W1 sqlite 952.3809523809524 rows/s
result sqlite-c W1 sqlite 1000 rows/s
result libuow W1 sqlite 909.0909090909091 rows/s
result sqlite-c W1 sqlite 1000 rows/s
na libuow W3 pg the server went away
result libpq W3 pg 40 ms
result libpq-pipeline W3 pg 10 ms
result libuow W3 pg 12 ms
result libpq W3 pg 40 ms
result libpq-pipeline W3 pg 20 ms
result libuow W3 pg 15 ms
result libpq W3 pg 40 ms
result libpq-pipeline W3 pg 10 ms
na libuow W2 pg the server went away
result libpq-pipeline W2 pg 100 units/s
result libuow W2 pg 90 units/s
result libuow W4 sqlite+pg 50 units/s
result raw-2pc W4 sqlite+pg 100 units/s
result libuow W4 sqlite+pg 60 units/s
result raw-2pc W4 sqlite+pg 100 units/s
"""


class PairedRatios(unittest.TestCase):
    def setUp(self):
        fd, self.path = tempfile.mkstemp(suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(RESULTS)

    def tearDown(self):
        os.unlink(self.path)

    def paired(self, figure):
        """The lines of the round-by-round table for `figure` ("W1 sqlite")."""
        lines = report.paired_text(report.read_rounds(self.path))
        return [line for line in lines if line.startswith(figure)]

    def test_each_round_is_paired_with_the_fastest_raw_c_of_that_round(self):
        [w1] = self.paired("W1 sqlite")
        self.assertEqual(w1.split()[2], "1.10x")
        self.assertIn("1.25 1.05 1.10", w1)

    def test_the_median_of_the_pairs_says_whether_the_target_is_met(self):
        # W1: the best runs miss the target (1.25x), the median of the pairs meets it.
        [w1] = self.paired("W1 sqlite")
        self.assertTrue(w1.endswith("(target <= 1.10x: met)"), w1)
        rows, _ = report.build_rows(report.read_results(self.path))
        [note] = [r[6] for r in rows if r[0] == "W1" and r[3] == "libuow"]
        self.assertIn("MISSED", note)
        [w4] = self.paired("W4 sqlite+pg")
        self.assertTrue(w4.endswith("(target <= 1.15x: MISSED)"), w4)

    def test_the_table_keeps_the_ratio_of_the_best_runs(self):
        rows, ratios = report.build_rows(report.read_results(self.path))
        self.assertAlmostEqual(ratios[("libuow", "W1", "sqlite")], 1.25)

    def test_a_failed_run_keeps_its_round(self):
        # W3 pg: libuow failed in round 1, so 12/20 and 15/10, not 12/10 and 15/20.
        [w3] = self.paired("W3 pg")
        self.assertEqual(w3.split()[2], "1.05x")
        self.assertIn("0.60 1.50", w3)

    def test_a_figure_with_fewer_than_two_paired_rounds_is_left_out(self):
        self.assertEqual(self.paired("W2 pg"), [])


if __name__ == "__main__":
    unittest.main()
