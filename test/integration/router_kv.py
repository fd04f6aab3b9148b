"""router_kv - `dyn frontend --router-mode kv` in front of three builtin
stories260K workers (block size 16, a small KV cache).

Observable behaviour, read from each worker's own /metrics (request and
prefix-cache hit counters) and from the frontend's /metrics and debug log:
the router subscribes to each worker's KV events (and applies a dump); a
long prompt sent again lands on the worker that served it first (and hits
that worker's prefix cache), so does a longer prompt extending it;
different prefixes sent together spread over the workers, every prefix
sticks to its worker; a second frontend with --no-kv-events (approximate
mode: its index predicted from its own decisions) also keeps a prompt on
one worker; a killed worker is purged from the router's index while
requests keep succeeding.  Sequential requests wait SETTLE seconds so that
the worker's events (flushed every 20 ms) reach the router.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
SETTLE = 0.1
WARGS = ["--threads", "1", "--block-size", "16", "--kv-cache-tokens", "2048"]
workers = [d.worker(WARGS, engine="auto", ttl=3000) for _ in range(3)]
os.environ["DYN_LOG"] = "router=debug,warn"  # the frontend logs each decision
fe = d.frontend(["--router-mode", "kv"])


def fe_log():
    fe.log.flush()
    fe.log.seek(0)
    return fe.log.read()


def models():
    with urllib.request.urlopen(fe.url + "/v1/models", timeout=5) as r:
        return [m["id"] for m in json.load(r)["data"]]


def routable():
    return d.metric(d.http_get(fe.url + "/metrics")[1], "dyn_frontend_workers", model=NAME)


ok = d.wait_until(lambda: models() == [NAME] and routable() == 3)
d.check("three workers registered behind the kv router", ok, fe.stderr())
if not ok:
    d.finish()
resyncs = lambda: d.metric(d.http_get(fe.url + "/metrics")[1],  # noqa: E731
                           "dyn_frontend_router_kv_resyncs_total")
ok = d.wait_until(lambda: resyncs() >= 3)
d.check("the router subscribes to each worker's KV events and applies a dump", ok,
        f"{resyncs()} dumps; " + fe.stderr())


def counters():
    return d.worker_counters(workers)


def complete(prompt, max_tokens=8, url=None):
    body = json.dumps({"model": NAME, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    req = urllib.request.Request((url or fe.url) + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)


def served_by(prompt, url=None):
    """Send prompt alone; the worker whose request counter moved."""
    before = counters()
    st, _ = complete(prompt, url=url)
    time.sleep(SETTLE)  # the worker's KV events and load reach the router
    after = counters()
    moved = [w for w in after if w in before and after[w][0] > before[w][0]]
    hit = {w: after[w][1] - before[w][1] for w in moved}
    return st, moved, hit


WORDS = ("the little dog ran to the park and saw a big red ball under a tree so he "
         "played with it all day long until the sun went down and his mom called him home").split()


def prompt(seed):
    # A long prompt (well over 4 blocks of 16 tokens) with its own prefix.
    return " ".join(["Story %d:" % seed] + WORDS[seed % 7:] + WORDS[:seed % 7] + WORDS)


A = prompt(0)
st, first, _ = served_by(A)
again = [served_by(A) for _ in range(4)]
d.check("a repeated long prompt lands on the same worker",
        st == 200 and len(first) == 1 and all(s == 200 and m == first for s, m, _ in again),
        f"first {first}, then {[m for _, m, _ in again]}; router log: " +
        "\n".join(l for l in fe_log().splitlines() if "router" in l)[-3000:])
d.check("and hits that worker's prefix cache",
        all(h.get(first[0], 0) >= 16 for _, _, h in again), str([h for _, _, h in again]))

# A longer conversation sharing A's prefix (multi-turn) goes where A is.
st, moved, hit = served_by(A + " Then the dog slept under the tree and dreamed of the red ball.")
d.check("a prompt extending the cached prefix lands on its worker",
        st == 200 and moved == first and hit.get(first[0], 0) >= 16, f"{moved} {hit}")

# Different prefixes at once: in-flight load spreads them.
prompts = [prompt(s) for s in range(1, 7)]
before = counters()
with concurrent.futures.ThreadPoolExecutor(6) as ex:
    res = list(ex.map(lambda p: complete(p, 48), prompts))
after = counters()
used = [w for w in after if after[w][0] > before[w][0]]
d.check("different prefixes sent together spread over the workers",
        all(s == 200 for s, _ in res) and len(used) >= 2, f"used {used}")
sticky = []
for p in prompts:
    owners = [served_by(p)[1] for _ in range(2)]
    sticky.append(owners[0] == owners[1] and len(owners[0]) == 1)
d.check("each prefix sticks to one worker", all(sticky), str(sticky))

log = fe_log()
d.check("debug log shows each decision (overlap per candidate, chosen worker, cost)",
        "chose" in log and "overlap=" in log and "cost=" in log, log[-500:])
text = d.http_get(fe.url + "/metrics")[1]
n = d.metric(text, "dyn_frontend_router_decision_seconds_count")
hr = d.metric(text, "dyn_frontend_router_kv_hit_rate_count")
hits = d.metric(text, "dyn_frontend_router_kv_hit_rate_sum")
d.check("router metrics: decision time and KV hit-rate histograms",
        n is not None and n >= 20 and hr is not None and hr >= 20 and hits and hits > 5,
        f"decisions {n}, hit-rate count {hr}, sum {hits}")
ev = d.metric(text, "dyn_frontend_router_kv_events_applied_total")
d.check("router metrics: KV events applied", ev is not None and ev >= 7, f"{ev}")
promtool = shutil.which("promtool")
if promtool:
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    d.check("promtool check metrics (kv router)", p.returncode == 0, p.stdout + p.stderr)
else:
    d.skip("promtool check metrics (kv router)", "promtool not installed")

# Approximate mode: a second frontend that ignores the KV events predicts
# the caches from its own decisions.
os.environ["DYN_LOG"] = "warn"
fe2 = d.frontend(["--router-mode", "kv", "--no-kv-events"])
ok = d.wait_until(lambda: d.metric(d.http_get(fe2.url + "/metrics")[1], "dyn_frontend_workers",
                                   model=NAME) == 3)
B = prompt(100)
owners = [served_by(B, fe2.url)[1] for _ in range(4)]
d.check("--no-kv-events: a repeated prompt lands on the same worker",
        ok and len(owners[0]) == 1 and all(o == owners[0] for o in owners), str(owners))
t2 = d.http_get(fe2.url + "/metrics")[1]
d.check("--no-kv-events: no KV events applied",
        d.metric(t2, "dyn_frontend_router_kv_events_applied_total") == 0 and
        d.metric(t2, "dyn_frontend_router_kv_resyncs_total") == 0, "")
fe2.stop()

# Kill the worker holding A: requests keep succeeding, it is purged.
victim = next(w for w in workers if w.id == first[0])
victim.stop(signal.SIGKILL)
st, moved, _ = served_by(A)
d.check("after a worker is killed, its prefix is served by another", st == 200 and
        len(moved) == 1 and moved[0] != victim.id, f"{st} {moved}")
ok = d.wait_until(lambda: routable() == 2, timeout=15)
ok = ok and d.wait_until(lambda: "purged from the index" in fe_log(), timeout=5)
d.check("the killed worker is purged from the index", ok, fe.stderr()[-800:])
res = [complete(prompt(s), 4)[0] for s in range(8)]
d.check("requests keep succeeding", res == [200] * 8, str(res))
d.finish()
