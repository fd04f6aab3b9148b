"""planner_virtual - the live `dyn planner` in load mode with the virtual
connector: an echo worker behind a frontend, the planner reading the
frontend's /metrics every second.

Expected from the load rule in dyn-planner(1) (queue-high 2, queue-low
0.5, 1..3 workers), with the test's own count of requests as reference:
  idle: 0 in flight on 1 worker -> 1 (the minimum);
  6 slow requests held in flight: 6 per worker > 2 -> 2 workers;
  the planner's /metrics (--system-port) then says 2 desired, 1 current;
  the requests counted by the decisions (sum of observed rate x interval)
  are the 6 the test sent; the store keys NS/planner/decision and
  NS/planner/workers/agg (read with `dyn store get`) hold the last decision.
Bad input: --disagg without --profile, a --frontend that is not a URL.
"""
import json
import os
import re
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import plannerproc as pp  # noqa: E402

NREQ = 6
w = d.worker(delay=150)		# ms per token: 20 tokens hold a request 3 s
f = d.frontend()
d.check("worker_registered", d.wait_until(lambda: d.metric(
    d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers", role="agg") == 1, timeout=15))

pl = pp.Planner(["--frontend", f.url, "--adjustment-interval", "1", "--queue-high", "2",
                 "--queue-low", "0.5", "--min-workers", "1", "--max-workers", "3",
                 "--iterations", "8", "--system-port", "0"])
decisions = pl.decisions


d.check("idle_decision", d.wait_until(lambda: len(decisions()) >= 1, timeout=10),
        "no decision line")
m = re.search(r"system port (\d+)", pl.err())
d.check("system_port", m is not None)
pm_url = f"http://127.0.0.1:{m.group(1) if m else 1}/metrics"


def pmetric(name, **labels):
    return d.metric(d.http_get(pm_url)[1], name, **labels)

first = decisions()[0]
d.check("idle_keeps_minimum", first.get("workers") == 1 and first.get("mode") == "load" and
        first.get("current", {}).get("agg") == 1, first)


def ask(i):
    body = {"model": "stories260K", "prompt": "one two three", "max_tokens": 20}
    req = urllib.request.Request(f.url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


ts = [threading.Thread(target=ask, args=(i,)) for i in range(NREQ)]
for t in ts:
    t.start()
up = d.wait_until(lambda: any(x.get("workers") == 2 and x.get("inflight", 0) > 2
                              for x in decisions()), timeout=10)
d.check("load_scales_up", up, [(x.get("inflight"), x.get("workers")) for x in decisions()])
d.check("metrics_desired", d.wait_until(
    lambda: pmetric("dyn_planner_desired_workers", role="agg") == 2, timeout=5) and
    pmetric("dyn_planner_current_workers", role="agg") == 1 and
    pmetric("dyn_planner_decisions_total") >= 1, d.http_get(pm_url)[1][-600:])
d.promtool_check("metrics_format", d.http_get(pm_url)[1])
for t in ts:
    t.join()
pl.p.wait(timeout=30)
pl.reader.join(timeout=5)
ds = decisions()
counted, prev_t = 0.0, 0.0
for x in ds:
    # t_s counts from the planner's first read of the metrics
    counted += x["observed"]["rate"] * (x["t_s"] - prev_t)
    prev_t = x["t_s"]
d.check("requests_counted", abs(counted - NREQ) < 0.5, f"{counted} of {NREQ}")
d.check("decision_lines", pl.p.returncode == 0 and len(ds) == 8, (pl.p.returncode, len(ds)))

r = d.run_offline("store", "--store", d.store, "get", "dyn/planner/decision")
stored = json.loads(r.stdout) if r.returncode == 0 else {}
d.check("store_decision", stored == ds[-1], (r.returncode, r.stdout, r.stderr))
r = d.run_offline("store", "--store", d.store, "get", "dyn/planner/workers/agg")
d.check("store_workers", r.returncode == 0 and r.stdout.strip() == str(ds[-1]["workers"]),
        (r.stdout, r.stderr))

r = d.run_offline("planner", "--frontend", f.url, "--disagg")
d.check("disagg_needs_profile", r.returncode == 2 and "--profile" in r.stderr, r.stderr)
r = d.run_offline("planner", "--frontend", "localhost:1")
d.check("frontend_not_url", r.returncode == 2 and "not an http" in r.stderr, r.stderr)
d.finish()
