#!/usr/bin/env python3
"""report.py - turns the result lines of the benchmark programs into the
table that `make bench` prints and the charts it writes.

    report.py RESULTS SCALE OUTDIR

RESULTS holds lines `result IMPL WORKLOAD STORE VALUE UNIT` and
`na IMPL WORKLOAD STORE REASON...` (bench/bench.h), one per run: the best run
of each (implementation, workload, store) makes the table, and libuow's ratio
to the fastest raw C program of each round is listed under it. Workloads
W1-W4 make the main table; R1 and R2 (bench_relay: the relay and Redis
intents, libuow only) a small table of their own. SCALE holds the lines of
`bench_uow scale`. The table goes to stdout and OUTDIR/table.txt; the charts
(gnuplot, when installed) to OUTDIR/bench-workloads.png and
OUTDIR/bench-scaling.png. Only the Python standard library is used.
"""
import os
import shutil
import statistics
import subprocess
import sys

WORKLOADS = [("W1", "bulk insert"), ("W2", "enrollment"), ("W3", "load-modify"),
             ("W4", "cross-store")]
STORES = {"W1": ["sqlite", "pg"], "W2": ["sqlite", "pg"], "W3": ["sqlite", "pg"],
          "W4": ["sqlite+pg"]}
IMPLS = ["libuow", "sqlite-c", "libpq", "libpq-pipeline", "raw-2pc", "sqlalchemy"]
RAW_C = {"sqlite-c", "libpq", "libpq-pipeline", "raw-2pc"}
# libuow's time may be at most this many times the fastest raw C program's.
TARGETS = {"W1": 1.10, "W2": 1.10, "W3": 1.30, "W4": 1.15}


def lower_is_better(unit):
    return unit == "ms"


def read_rounds(path):
    """{(impl, workload, store): [(value, unit) or (None, reason), ...]}: every
    run's figure, in the order of the file. run.sh runs every program once per
    round, in turn, so the i-th figure of each key comes from round i (a
    round of W1-W3 on SQLite is SQLITE_PAIRS such rounds in a row)."""
    rounds = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or parts[0] not in ("result", "na"):
                continue
            if parts[0] == "result" and len(parts) >= 6:
                run = (float(parts[4]), parts[5])
            else:
                run = (None, " ".join(parts[4:]) or "no reason given")
            rounds.setdefault((parts[1], parts[2], parts[3]), []).append(run)
    return rounds


def read_results(path):
    """{(impl, workload, store): (value, unit, runs) or (None, reason, runs)}:
    the best run of each, or the last reason when none gave a figure."""
    best = {}
    for key, runs in read_rounds(path).items():
        figures = [(value, unit) for value, unit in runs if value is not None]
        if not figures:
            best[key] = (None, runs[-1][1], len(runs))
            continue
        unit = figures[0][1]
        pick = min if lower_is_better(unit) else max
        best[key] = (pick(value for value, _ in figures), unit, len(runs))
    return best


def paired_text(rounds):
    """libuow's ratio to the fastest raw C program of the same round, round by
    round, and their median: the best runs of two programs may come from
    different rounds, and on a noisy machine the best-run ratio moves with
    whichever program had the luckiest run."""
    out = []
    for workload, _ in WORKLOADS:
        for store in STORES[workload]:
            mine = rounds.get(("libuow", workload, store), [])
            raw_runs = [rounds[(impl, workload, store)] for impl in IMPLS
                        if impl in RAW_C and (impl, workload, store) in rounds]
            ratios = []
            for i, (value, unit) in enumerate(mine):
                raw = [seconds_per_item(*runs[i]) for runs in raw_runs
                       if i < len(runs) and runs[i][0] is not None]
                if value is not None and raw:
                    ratios.append(seconds_per_item(value, unit) / min(raw))
            if len(ratios) < 2:
                continue
            each = " ".join(f"{r:.2f}" for r in ratios)
            median = statistics.median(ratios)
            target = TARGETS[workload]
            out.append(f"{workload} {store}".ljust(15) + f"{median:.2f}x".ljust(10)
                       + f"{each}   (target <= {target:.2f}x: "
                       + f"{'met' if median <= target else 'MISSED'})")
    if not out:
        return []
    return ["", "libuow / fastest raw C of the same round (each round runs every program once, "
            "in turn; W1-W3 on SQLite, SQLITE_PAIRS times):", "",
            "figure".ljust(15) + "median".ljust(10) + "round by round",
            "-" * 60] + out


def seconds_per_item(value, unit):
    """A figure as a time, so that ratios read the same way everywhere: higher is slower."""
    return value if lower_is_better(unit) else 1.0 / value


def fmt_value(value, unit):
    if lower_is_better(unit):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def build_rows(best):
    """Rows of the table and the ratio of each figure to the fastest raw C one."""
    rows, ratios = [], {}
    for workload, title in WORKLOADS:
        for store in STORES[workload]:
            present = [i for i in IMPLS if (i, workload, store) in best]
            if not present:
                continue
            raw = [seconds_per_item(best[(i, workload, store)][0], best[(i, workload, store)][1])
                   for i in present if i in RAW_C and best[(i, workload, store)][0] is not None]
            fastest = min(raw) if raw else None
            sqla = best.get(("sqlalchemy", workload, store))
            for impl in present:
                value, unit, _ = best[(impl, workload, store)]
                if value is None:
                    rows.append((workload, title, store, impl, f"n/a ({unit})", "", ""))
                    continue
                ratio = seconds_per_item(value, unit) / fastest if fastest else None
                ratios[(impl, workload, store)] = ratio
                ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
                note = ""
                if impl in RAW_C and ratio is not None and abs(ratio - 1.0) < 1e-9:
                    note = "fastest raw C"
                if impl == "libuow" and ratio is not None:
                    target = TARGETS[workload]
                    note = f"target <= {target:.2f}x: {'met' if ratio <= target else 'MISSED'}"
                    if sqla and sqla[0] is not None:
                        ahead = seconds_per_item(sqla[0], sqla[1]) / seconds_per_item(value, unit)
                        note += f"; {ahead:.1f}x faster than SQLAlchemy"
                rows.append((workload, title, store, impl, fmt_value(value, unit), ratio_text,
                             note))
    return rows, ratios


def table_text(rows, header):
    out = [header, ""]
    cols = ("workload", "store", "implementation", "figure (best run)", "vs fastest raw C",
            "libuow target / note")
    width = [15, 10, 15, 22, 17]
    out.append("".join(c.ljust(w) for c, w in zip(cols, width)) + cols[-1])
    out.append("-" * 118)
    last = None
    for workload, title, store, impl, figure, ratio, note in rows:
        group = (workload, store)
        if last and last[0] != workload:
            out.append("")
        label = f"{workload} {title}" if not last or last[0] != workload else ""
        where = store if group != last else ""
        if figure.startswith("n/a"):
            out.append(f"{label:<15}{where:<10}{impl:<15}{figure}")
        else:
            out.append(f"{label:<15}{where:<10}{impl:<15}{figure:<22}{ratio:<17}{note}")
        last = group
    return out


# bench_relay's figures (w_relay.c), in table order: (workload, what it measures).
RELAY_ROWS = [
    ("R1-commit", "R1 commit: units of 10 events (the producers)"),
    ("R1-b100", "R1 relay to a Redis stream, batch 100"),
    ("R1-b1000", "R1 relay to a Redis stream, batch 1000"),
    ("R1-keys100-b100", "R1 relay, 100 busy keys, batch 100"),
    ("R1-keys100-b1000", "R1 relay, 100 busy keys, batch 1000"),
    ("R2-units", "R2 units: create or update one Redis object"),
    ("R2-skip-b100", "R2 relay re-applies, all not newer, batch 100"),
    ("R2-skip-b1000", "R2 relay re-applies, all not newer, batch 1000"),
    ("R2-apply-b100", "R2 relay applies after FLUSHDB, batch 100"),
    ("R2-apply-b1000", "R2 relay applies after FLUSHDB, batch 1000"),
]
RELAY_STORES = ["sqlite", "pg"]


def relay_text(best):
    """The table of R1 and R2, or nothing when they did not run."""
    keys = {k for k in best if k[0] == "libuow" and k[1][:1] == "R"}
    if not keys:
        return []
    quick = os.environ.get("QUICK", "0") not in ("", "0")
    events, units = (5000, 1000) if quick else (20000, 5000)
    runs = max((best[k][2] for k in keys if k[1] not in ("R1-commit", "R2-units")), default=0)
    out = ["", f"After the commit: libuow only, best of {runs} run(s); Redis on a unix socket.",
           f"R1: {events:,} events committed in units of 10 (a key each), then uow_relay_run "
           "with",
           "    uow_sink_redis_stream until the backlog is 0; the stream's XLEN is checked.",
           "    Then as many again with 100 keys in all (busy keys: each key's events in order).",
           f"R2: {units:,} units, each creating (half) or updating (half) one object mapped to "
           "Redis,",
           "    its intent committed in the SQL store and applied right after the commit. Then "
           "every",
           "    intent row is made pending again and the relay re-applies them (each skipped as "
           "not",
           "    newer: the idempotent path), then, after FLUSHDB, applies them for real. The "
           "objects",
           "    are checked in Redis after each step.", ""]
    width = [50, 20]
    out.append("measurement".ljust(width[0]) + "".join(
        s.ljust(width[1]) for s in RELAY_STORES).rstrip())
    out.append("-" * (width[0] + width[1] * len(RELAY_STORES)))
    known = [w for w, _ in RELAY_ROWS]
    notes = []
    for workload, title in RELAY_ROWS:
        cells = []
        for store in RELAY_STORES:
            found = best.get(("libuow", workload, store))
            if found is None or found[0] is None:
                cells.append("-" if found is None else "n/a")
                if found is not None:
                    notes.append(f"{workload} {store}: n/a ({found[1]})")
            else:
                cells.append(fmt_value(found[0], found[1]))
        if any(c != "-" for c in cells):
            out.append(title.ljust(width[0]) + "".join(c.ljust(width[1]) for c in cells).rstrip())
    # A run that failed before its first figure reports under its own name.
    for impl, workload, store in sorted(keys):
        value, reason, _ = best[(impl, workload, store)]
        if workload not in known and value is None:
            notes.append(f"{workload} {store}: n/a ({reason})")
    out += [""] + notes if notes else []
    return out


def read_scale(path):
    points, problems = [], []
    if not os.path.exists(path):
        return points, problems
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "scale" and len(parts) == 9:
                n = int(parts[1])
                new_ms, insert_ms, bytes_new, load_ms, bytes_loaded, flush_ms, commit_ms = map(
                    float, parts[2:])
                points.append(dict(n=n, new=new_ms, insert=insert_ms, bytes_new=bytes_new,
                                   load=load_ms, bytes_loaded=bytes_loaded, flush=flush_ms,
                                   commit=commit_ms))
            elif parts and parts[0] == "na":
                problems.append(" ".join(parts[4:]))
    return points, problems


def scale_text(points, problems):
    out = ["", "Tracked entities: libuow, in-memory SQLite, users of 5 columns (2 short texts);",
           "microseconds per entity at each size, and the growth of that cost from the",
           "smallest size (1.0x = linear).", ""]
    head = ("entities", "new", "insert commit", "load (find)", "flush, no change",
            "commit, 10% changed", "bytes/new", "bytes/loaded")
    width = [10, 9, 15, 13, 18, 21, 11]
    out.append("".join(h.ljust(w) for h, w in zip(head, width)) + head[-1])
    out.append("-" * 110)
    first = points[0] if points else None
    for p in points:
        cells = [f"{p['n']:,}"]
        for key in ("new", "insert", "load", "flush", "commit"):
            per = p[key] * 1000.0 / p["n"]
            growth = per / (first[key] * 1000.0 / first["n"]) if first[key] > 0 else 0.0
            cells.append(f"{per:.2f}" if key == "new" else f"{per:.2f} ({growth:.1f}x)")
        cells += [f"{p['bytes_new']:.0f}", f"{p['bytes_loaded']:.0f}"]
        out.append("".join(c.ljust(w) for c, w in zip(cells, width)) + cells[-1])
    if points:
        big = points[-1]
        out.append("")
        out.append(f"At {big['n']:,} entities: insert commit {big['insert']:.0f} ms, load "
                   f"{big['load']:.0f} ms, flush with nothing changed {big['flush']:.0f} ms, "
                   f"commit with 10% changed {big['commit']:.0f} ms.")
        out.append("Bytes are what the library holds from its allocator (uow_set_allocator), "
                   "per tracked entity: for")
        out.append("loaded ones, counting what the environment kept from the unit before "
                   "(up to 8 MiB) and handed on.")
    for problem in problems:
        out.append(f"scale: n/a ({problem})")
    return out


def charts(ratios, points, outdir):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return ["", "Charts: gnuplot is not installed (apt-get install gnuplot-nox); none written."]
    groups = [(w, s) for w, _ in WORKLOADS for s in STORES[w]
              if any((i, w, s) in ratios for i in IMPLS)]
    impls = [i for i in IMPLS if any((i, w, s) in ratios for w, s in groups)]
    data = os.path.join(outdir, "bench-workloads.dat")
    with open(data, "w", encoding="utf-8") as f:
        f.write("group " + " ".join(impls) + "\n")
        for w, s in groups:
            cells = [f"{ratios[(i, w, s)]:.4f}" if ratios.get((i, w, s)) else "-" for i in impls]
            f.write(f'"{w} {s}" ' + " ".join(cells) + "\n")
    png = os.path.join(outdir, "bench-workloads.png")
    script = [
        "set terminal pngcairo size 1200,600 noenhanced" if has_cairo(gnuplot) else
        "set terminal png size 1200,600 noenhanced",
        f"set output '{png}'",
        "set title 'libuow benchmark: time relative to the fastest raw C program (lower is "
        "better, log scale)'",
        "set style data histograms", "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1", "set boxwidth 0.9", "set logscale y",
        "set yrange [0.5:*]", "set grid ytics", "set key top left",
        "set datafile missing '-'", "set ylabel 'time / fastest raw C'",
        "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2",
        "plot " + ", ".join(
            f"'{data}' using {k + 2}:xtic(1) title columnheader({k + 2})"
            for k in range(len(impls))),
    ]
    written = [png]
    if points:
        sdata = os.path.join(outdir, "bench-scaling.dat")
        with open(sdata, "w", encoding="utf-8") as f:
            f.write("n insert load flush commit\n")
            for p in points:
                f.write(f"{p['n']} " + " ".join(f"{p[k] * 1000.0 / p['n']:.4f}"
                                                 for k in ("insert", "load", "flush", "commit"))
                        + "\n")
        spng = os.path.join(outdir, "bench-scaling.png")
        script += [
            "reset", f"set output '{spng}'",
            "set title 'libuow: microseconds per tracked entity (flat = linear growth)'",
            "set logscale x", "set logscale y", "set grid", "set key top left",
            "set xlabel 'tracked entities in the unit'", "set ylabel 'microseconds per entity'",
            "set format x '%.0s%c'",
            f"set xrange [{points[0]['n'] / 2}:{points[-1]['n'] * 2}]",
            f"plot '{sdata}' using 1:2 with linespoints title 'insert commit', "
            f"'' using 1:3 with linespoints title 'load (uow_find)', "
            f"'' using 1:4 with linespoints title 'flush, nothing changed', "
            f"'' using 1:5 with linespoints title 'commit, 10% changed'",
        ]
        written.append(spng)
    gp = os.path.join(outdir, "bench.gp")
    with open(gp, "w", encoding="utf-8") as f:
        f.write("\n".join(script) + "\n")
    run = subprocess.run([gnuplot, gp], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        return ["", f"Charts: gnuplot failed: {run.stderr.strip()[:300]}"]
    return ["", "Charts: " + ", ".join(written)]


def has_cairo(gnuplot):
    run = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True,
                         check=False)
    return "pngcairo" in (run.stdout + run.stderr)


def main(argv):
    if len(argv) != 4:
        print("usage: report.py RESULTS SCALE OUTDIR", file=sys.stderr)
        return 2
    results, scale, outdir = argv[1:]
    best = read_results(results)
    # R1-commit and R2-units are measured by both batches' runs: not counted here.
    counts = [v[2] for k, v in best.items() if k[1][:1] == "W"] or [
        v[2] for v in best.values()] or [0]
    runs = f"{max(counts)}" if min(counts) == max(counts) else f"{min(counts)} to {max(counts)}"
    header = (f"libuow benchmark - best of {runs} run(s) per figure; ratio = time / time of the "
              f"fastest raw C program for that workload and store (1.00x = as fast).")
    rows, ratios = build_rows(best)
    lines = table_text(rows, header)
    lines += paired_text(read_rounds(results))
    lines += relay_text(best)
    points, problems = read_scale(scale)
    lines += scale_text(points, problems)
    lines += charts(ratios, points, outdir)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(outdir, "table.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
