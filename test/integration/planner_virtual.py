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
Surge step (SLA mode, a hand-made profile): a burst between two 5 s
decisions grows the pool at once, logged with trigger "surge" and its
window's count (dyn-planner(1)), sized by the profile for the window's
bound (n - 1.645 sqrt(n)) / window.
Bad input: --disagg without --profile, a --frontend that is not a URL.
"""
import json
import math
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

# ---- surge step (SLA mode) ---------------------------------------------
# A profile whose decode worker serves 4 tokens/s at c* = 8 (ITL target 50):
# OSL 2, 2 req/s a worker.  Two requests in the first 5 s interval: 0.4
# req/s, 1 worker.  Then a burst of BURST at once: within 2 s the planner
# counts them (answered plus in flight) and, the bound (n - 1.645 sqrt(n))
# / window needing more than 1 worker, grows the pool before the next
# interval: a line with trigger "surge".
BURST = 16
prof = os.path.join(d.tmp, "surge-profile.json")
with open(prof, "w") as fp:
    json.dump({"version": 1, "model": "stories260K", "engine": "echo",
               "prefill": [{"isl": 128, "ttft_ms": 20, "tokens_per_s": 6400}],
               "decode": [{"concurrency": 1, "itl_ms": 6, "tokens_per_s": 2},
                          {"concurrency": 8, "itl_ms": 8, "tokens_per_s": 4}]}, fp)
sp = pp.Planner(["--frontend", f.url, "--profile", prof, "--ttft", "500", "--itl", "50",
                 "--headroom", "0", "--adjustment-interval", "5", "--surge-window", "2",
                 "--max-workers", "16", "--iterations", "2"])


def ask_short():
    body = {"model": "stories260K", "prompt": "one two three", "max_tokens": 2}
    req = urllib.request.Request(f.url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


ask_short()
ask_short()
d.check("surge_first_interval", d.wait_until(lambda: len(sp.decisions()) >= 1, timeout=15) and
        sp.decisions()[0]["requests"] == 2 and sp.decisions()[0]["workers"] == 1,
        sp.decisions()[:1])
ts = [threading.Thread(target=ask_short) for _ in range(BURST)]
for t in ts:
    t.start()
for t in ts:
    t.join()
sp.p.wait(timeout=30)
sp.reader.join(timeout=5)
sds = sp.decisions()
surges = [x for x in sds if x.get("trigger") == "surge"]
s0 = surges[0] if surges else {}
n, rate = s0.get("requests", 0), s0.get("observed", {}).get("rate", 0)
bound = (n - 1.645 * n ** 0.5) / (n / rate) if rate else 0
d.check("surge_step", surges and all(x["trigger"] == "interval" for x in sds if x not in surges)
        and sds[0]["t_s"] < s0["t_s"] < sds[0]["t_s"] + 5 and s0["workers"] > 1 and
        1 <= n <= BURST and abs(s0["predicted"]["rate"] - bound) < 1e-3 * max(bound, 1),
        [(x["t_s"], x["trigger"], x["requests"], x["workers"]) for x in sds])
# its decode need from its own inputs by the profile: rate x OSL over
# 4 tokens/s / c_d per worker at c* = 8 (the echo worker's 150 ms tokens
# are far over the profile's: c_d is large, the ITL target over it still
# above itl(8)); the pool the aggregated sum, rounded up
want = (s0["predicted"]["rate"] * s0["predicted"]["osl"] * s0["correction"]["decode"] / 4
        if s0 else -1)
d.check("surge_sized", s0 and abs(s0["need"]["decode"] - want) < 1e-3 * max(want, 1) and
        s0["capacity"]["max_concurrency"] == 8 and
        s0["workers"] == math.ceil(s0["need"]["decode"] + s0["need"]["prefill"] - 1e-9), s0)

r = d.run_offline("planner", "--frontend", f.url, "--disagg")
d.check("disagg_needs_profile", r.returncode == 2 and "--profile" in r.stderr, r.stderr)
r = d.run_offline("planner", "--frontend", "localhost:1")
d.check("frontend_not_url", r.returncode == 2 and "not an http" in r.stderr, r.stderr)
d.finish()
