#!/usr/bin/env python3
"""bench_runner.py - test/bench/run.sh ('make bench') on a tree of fake
benchmark scripts in a temporary folder (BENCH_DIR): every script runs
in name order and its table is shown; FIGURE lines become
"name: value unit (ratio x baseline)" lines (no ratio for "-") and
summary.json entries; a failing script, or one printing a malformed
FIGURE line, is listed as failed (exit 1) while its good figures are kept;
BENCH=a,b runs only those; an unknown name in BENCH is an error (exit 2)
that lists the scripts there are and runs nothing; BENCH_DIR defaults to
test/bench under the current folder.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(TOP, "test", "bench", "run.sh")
failed = 0

SCRIPTS = {
    "good": 'echo "table of good"\n'
            'echo "FIGURE good.lat 5 ms 0.5 base"\n'
            'echo "FIGURE good.tput 1.5e3 tok/s 2 base2"\n',
    "nobase": 'echo "FIGURE nobase.x 7 ms - -"\n',
    "failing": 'echo "FIGURE failing.y 3 ms 1 b"\nexit 3\n',
    "malformed": 'echo "FIGURE mal.ok 1 ms 1 b"\necho "FIGURE mal.lat 5 ms"\n'
                 'echo "FIGURE mal.word fast ms 1 b"\n',
    # The runner itself is never run as a benchmark.
    "run": 'echo "RUNNER RAN"\n',
}


def result(name, ok, why=""):
    global failed
    if ok:
        print("PASS: bench_runner/%s" % name)
    else:
        failed += 1
        print("FAIL: bench_runner/%s: %s" % (name, why))
    sys.stdout.flush()


def make_tree(root, sub):
    d = os.path.join(root, sub)
    os.makedirs(d)
    for name, body in SCRIPTS.items():
        with open(os.path.join(d, name + ".sh"), "w") as f:
            f.write("#!/bin/sh\n" + body)
    return d


def run(cwd, out, bench=None, bench_dir=None):
    env = dict(os.environ, BENCH_OUT=out, DYN_BIN="/bin/false")
    env.pop("BENCH", None)
    env.pop("BENCH_DIR", None)
    if bench is not None:
        env["BENCH"] = bench
    if bench_dir is not None:
        env["BENCH_DIR"] = bench_dir
    return subprocess.run(["sh", RUN], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def figure_lines(stdout):
    lines = stdout.splitlines()
    if "== figures" not in lines:
        return None
    i = lines.index("== figures")
    return [l for l in lines[i + 1:] if not l.startswith("summary: ")]


def summary(out):
    try:
        with open(os.path.join(out, "summary.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-bench-runner-")
    try:
        benches = make_tree(tmp, "benches")

        # Everything.
        out = os.path.join(tmp, "all")
        p = run(tmp, out, bench_dir=benches)
        want = ["failing.y: 3 ms (1 x b)", "good.lat: 5 ms (0.5 x base)",
                "good.tput: 1.5e3 tok/s (2 x base2)", "mal.ok: 1 ms (1 x b)", "nobase.x: 7 ms"]
        got = figure_lines(p.stdout)
        result("all scripts: exit 1 (a script failed) (rc %d)" % p.returncode,
               p.returncode == 1, p.stderr[-300:])
        result("all scripts: figure lines, well-formed ones only, in script order (%s)" % got,
               got == want)
        heads = [l for l in p.stdout.splitlines() if l.startswith("== ")]
        result("all scripts in name order, the runner itself not among them (%s)" % heads,
               heads == ["== failing", "== good", "== malformed", "== nobase", "== figures"]
               and "RUNNER RAN" not in p.stdout)
        result("a script's table is shown", "table of good" in p.stdout)
        result("failed scripts reported: failing and malformed",
               "bench failing: failed" in p.stdout and "bench malformed: failed" in p.stdout
               and "bench good: failed" not in p.stdout and "bench nobase: failed" not in p.stdout)
        result("malformed FIGURE lines named",
               "malformed figure line: FIGURE mal.lat 5 ms" in p.stdout and
               "malformed figure line: FIGURE mal.word fast ms 1 b" in p.stdout, p.stdout[-500:])
        s = summary(out)
        figs = {f["name"]: f for f in (s or {}).get("figures", [])}
        ok = s is not None and sorted(figs) == ["failing.y", "good.lat", "good.tput", "mal.ok",
                                                "nobase.x"]
        ok = ok and figs["good.tput"] == {"name": "good.tput", "value": 1500.0, "unit": "tok/s",
                                          "ratio": 2, "baseline": "base2", "script": "good"}
        ok = ok and figs["nobase.x"]["ratio"] is None and figs["nobase.x"]["baseline"] is None \
            and figs["nobase.x"]["value"] == 7
        ok = ok and figs["mal.ok"]["script"] == "malformed"
        result("summary.json: the figures parsed, no ratio/baseline for '-' (%s)" % s, ok)
        result("summary.json: failed lists failing and malformed (%s)" % (s or {}).get("failed"),
               s is not None and s.get("failed") == ["failing", "malformed"])
        result("each script's output kept in BENCH_OUT/NAME.out",
               os.path.exists(os.path.join(out, "good.out")) and
               "FIGURE good.lat" in open(os.path.join(out, "good.out")).read())

        # A selection.
        out = os.path.join(tmp, "sel")
        p = run(tmp, out, bench="nobase,good", bench_dir=benches)
        got = figure_lines(p.stdout)
        s = summary(out)
        result("BENCH=nobase,good: only those run, exit 0 (rc %d, %s)" % (p.returncode, got),
               p.returncode == 0 and got == ["good.lat: 5 ms (0.5 x base)",
                                             "good.tput: 1.5e3 tok/s (2 x base2)",
                                             "nobase.x: 7 ms"]
               and "== failing" not in p.stdout and s is not None and s.get("failed") == [])

        # An unknown name.
        out = os.path.join(tmp, "unknown")
        p = run(tmp, out, bench="good,nope", bench_dir=benches)
        result("BENCH=good,nope: exit 2 naming nope and listing the scripts, nothing run "
               "(rc %d: %s)" % (p.returncode, p.stderr.strip()),
               p.returncode == 2 and "nope" in p.stderr and
               all(n in p.stderr for n in ("failing", "good", "malformed", "nobase")) and
               "== good" not in p.stdout and summary(out) is None)
        p = run(tmp, os.path.join(tmp, "unknown2"), bench="run", bench_dir=benches)
        result("BENCH=run (the runner) is no benchmark: exit 2 (rc %d)" % p.returncode,
               p.returncode == 2 and "RUNNER RAN" not in p.stdout)

        # BENCH_DIR defaults to test/bench under the current folder.
        make_tree(tmp, os.path.join("test", "bench"))
        out = os.path.join(tmp, "default")
        p = run(tmp, out, bench="nobase")
        result("BENCH_DIR defaults to ./test/bench (rc %d, %s)"
               % (p.returncode, figure_lines(p.stdout)),
               p.returncode == 0 and figure_lines(p.stdout) == ["nobase.x: 7 ms"])

        # The Makefile's bench target resolves its prerequisites for every
        # selection (a variable read before it was defined made 'make bench'
        # stop at once on "No rule to make target '/.installed'").
        for sel in (None, "engine", "bench_vs_aiperf", "rpc"):
            args = ["make", "-n", "--no-print-directory", "bench"] + (["BENCH=" + sel] if sel else [])
            p = subprocess.run(args, cwd=TOP, capture_output=True, text=True, timeout=60)
            result("make -n bench%s resolves (rc %d: %s)" % (" BENCH=" + sel if sel else "",
                                                              p.returncode, p.stderr.strip()[-200:]),
                   p.returncode == 0 and "No rule" not in p.stderr)
    except Exception as e:
        result("run", False, repr(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
