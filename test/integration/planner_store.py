"""planner_store - the live `dyn planner` finds its inputs in the store
(dyn-planner(1)): every frontend of the namespace by its record
v1/frontends/NS/ID (dyn-store(5)), and the workers' load reports.

One mock worker (--max-num-seqs 1: a second request waits) behind two
frontends; the planner in load mode, virtual connector, no --frontend,
interval 1 s, --queue-high 1000 (the frontends' in-flight count never
decides), --waiting-high 0.5.  Against the test's own counts:
  each frontend's record names its URL (dyn store ls);
  the decisions list both frontends' URLs;
  3 requests to one frontend and 5 to the other: the decisions count 8;
  every decision reads the worker's load report (1 worker, KV use in
  0..1) and says so in dyn_planner_worker_load_reports;
  4 long requests at once: the worker reports waiting requests and the
  planner asks for a second worker (only the waiting count can do that);
  the second frontend killed (SIGKILL, 1 s lease): its record goes and
  the decisions list the first frontend alone.
Bad input: a profile of another model than the workers serve (exit 1,
said clearly); a --max-gpu-budget too small for --min-workers; a
--worker-cmd that fails at once (the local connector gives up, exit 1);
a target no budget meets (said on standard error, the maximum kept).
"""
import json
import os
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import plannerproc as pp  # noqa: E402

w = d.worker(engine="mock", extra=["--max-num-seqs", "1"])
f1 = d.frontend()
f2 = d.frontend(extra=["--lease-ttl", "1000"])


def fe_workers(f):
    return d.metric(d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers", role="agg")


d.check("workers_seen", d.wait_until(lambda: fe_workers(f1) == 1 and fe_workers(f2) == 1,
                                     timeout=20))


def records():
    r = d.run_offline("store", "--store", d.store, "ls", "--json", "v1/frontends/dyn/")
    return [json.loads(json.loads(x)["value"]) for x in r.stdout.splitlines() if x.strip()]


d.check("frontend_records", sorted(x["url"] for x in records()) == sorted([f1.url, f2.url]),
        records())

pl = pp.Planner(["--adjustment-interval", "1", "--queue-high", "1000", "--queue-low", "0",
                 "--waiting-high", "0.5", "--max-workers", "3", "--system-port", "0"])
decisions = pl.decisions


d.check("both_frontends", d.wait_until(
    lambda: decisions() and sorted(decisions()[-1]["frontends"]) == sorted([f1.url, f2.url]),
    timeout=15), decisions()[-1:])


def complete(f, max_tokens=4):
    body = {"model": "stories260K", "prompt": "one two three", "max_tokens": max_tokens}
    req = urllib.request.Request(f.url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


n0 = len(decisions())
codes = [complete(f1) for _ in range(3)] + [complete(f2) for _ in range(5)]


def counted():
    return sum(x["requests"] for x in decisions()[n0:])


d.check("sum_of_frontends", codes == [200] * 8 and
        d.wait_until(lambda: counted() >= 8, timeout=10) and
        (time.sleep(2.5) or counted() == 8), (codes, counted()))

last = decisions()[-1]
agg = last["worker_load"]["agg"]
d.check("load_reports", agg["workers"] == 1 and 0 <= agg["kv_use"] <= 1 and
        last["worker_load"]["prefill"]["workers"] == 0, last["worker_load"])
m = None
for line in pl.err().splitlines():
    if "system port" in line:
        m = int(line.rsplit(" ", 1)[1])
pm = d.http_get(f"http://127.0.0.1:{m}/metrics")[1] if m else ""
d.check("load_metrics", d.metric(pm, "dyn_planner_worker_load_reports", role="agg") == 1 and
        d.metric(pm, "dyn_planner_frontends") == 2, pm[-600:])
d.check("idle_one_worker", last["workers"] == 1, last)

n1 = len(decisions())
ts = [threading.Thread(target=complete, args=(f1, 300)) for _ in range(4)]
for t in ts:
    t.start()
up = d.wait_until(lambda: any(x["workers"] == 2 and x["worker_load"]["agg"]["waiting"] >= 1
                              for x in decisions()[n1:]), timeout=15)
d.check("waiting_scales_up", up,
        [(x["worker_load"]["agg"], x["inflight"], x["workers"]) for x in decisions()[n1:]])
for t in ts:
    t.join()

os.kill(f2.p.pid, signal.SIGKILL)
f2.p.wait()
d.check("killed_frontend_record_gone", d.wait_until(
    lambda: [x["url"] for x in records()] == [f1.url], timeout=15), records())
d.check("killed_frontend_left_view", d.wait_until(
    lambda: decisions()[-1]["frontends"] == [f1.url], timeout=10), decisions()[-1:])
pl.p.send_signal(signal.SIGTERM)
d.check("planner_exits", pl.p.wait(timeout=20) == 0, pl.p.returncode)

# ---- bad input ----------------------------------------------------------
prof = os.path.join(d.tmp, "other.json")
with open(prof, "w") as f:
    json.dump({"version": 1, "model": "another-model", "engine": "mock",
               "prefill": [{"isl": 128, "ttft_ms": 20, "tokens_per_s": 6400}],
               "decode": [{"concurrency": 1, "itl_ms": 6, "tokens_per_s": 166},
                          {"concurrency": 8, "itl_ms": 8, "tokens_per_s": 1000}]}, f)
r = d.run_offline("planner", "--store", d.store, "--profile", prof, "--adjustment-interval",
                  "0.5", "--iterations", "3", timeout=30)
d.check("profile_other_model", r.returncode == 1 and "'another-model'" in r.stderr and
        "'stories260K'" in r.stderr, (r.returncode, r.stderr[-400:]))

r = d.run_offline("planner", "--store", d.store, "--max-gpu-budget", "3", "--disagg",
                  "--profile", prof, "--decode-gpus", "4")
d.check("gpu_budget_too_small", r.returncode == 2 and "--max-gpu-budget 3" in r.stderr,
        r.stderr)

# the same profile renamed for the served model: an ITL of 1 ms is below
# one sequence's 6 ms, so no budget meets it
with open(prof) as f:
    p = json.load(f)
p["model"] = "stories260K"
with open(prof, "w") as f:
    json.dump(p, f)
r = d.run_offline("planner", "--store", d.store, "--frontend", f1.url, "--profile", prof,
                  "--itl", "1", "--max-workers", "3", "--adjustment-interval", "0.5",
                  "--iterations", "2", timeout=30)
ds = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
d.check("infeasible_said", r.returncode == 0 and ds and all(
    x["infeasible"] and x["workers"] == 3 for x in ds) and
    "the targets cannot be met: ITL target 1.0 ms" in r.stderr, (r.stdout[-300:], r.stderr[-300:]))

r = d.run_offline("planner", "--store", "file://" + os.path.join(d.tmp, "other-store"),
                  "--frontend", f1.url, "--connector", "local", "--worker-cmd",
                  "/nonexistent/dyn serve", "--adjustment-interval", "0.3", "--iterations",
                  "20", timeout=60)
d.check("worker_cmd_fails", r.returncode == 1 and
        "worker command failed 3 times in a row" in r.stderr and "exit status 127" in r.stderr
        and "/nonexistent/dyn serve" in r.stderr, (r.returncode, r.stderr[-500:]))
d.finish()
