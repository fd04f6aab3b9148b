"""router_tiers - the KV router counts blocks in the workers' lower KV tiers
(issue 19, Routing): two builtin stories260K workers with a four-block
pool (64 tokens) and a G2 host tier, a router service (dyn-router(1))
subscribed to their KV events, and a frontend with --router-mode kv that
routes through it.

Prompt A goes through the frontend to some worker X; prompt B, sent to X
directly, evicts A's three cached blocks to X's G2.  Checked against what
the workers themselves say: X's own kv_dump (its KV events' JSON) lists
A's blocks with "medium":"G2"; `dyn router --dump` shows them under G2 for
X; A sent again lands on X (the router's logged decision: overlap 3 on X,
0 on the other, and X's cost 3 x (1 - 0.8) lower than without the tier)
and X reads 3 blocks back from G2.  Without the tier in the events both
workers would have overlap 0 and the pick would be a coin toss.

Then, in place of all these, two workers whose only lower tier is one
shared G4 directory: A's blocks evicted from X land in G4, the dump shows
them under X's G4, and A again counts them on both workers alike (overlap
3, cost 3 - 3 x 0.3 each): either may serve it, and it reads them from G4.
"""
import json
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

WARGS = ["--threads", "1", "--block-size", "16", "--kv-cache-tokens", "64",
         "--kv-cache-dtype", "f32"]
workers = [d.worker(WARGS + ["--kv-host-cache-gb", "0.01"], engine="builtin", ttl=3000)
           for _ in range(2)]
by_id = {w.id: w for w in workers}
os.environ["DYN_LOG"] = "router=debug,warn"
rt = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000"],
            r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)")
fe = d.frontend(["--router-mode", "kv"])


def log_of(p):
    p.log.flush()
    p.log.seek(0)
    return p.log.read()


def dump():
    p = subprocess.run([d.DYN, "router", "--dump", "--json", "--timeout", "5"],
                       capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, DYN_STORE=d.store))
    return json.loads(p.stdout) if p.returncode == 0 else {"workers": []}


def tiers_of(wid):
    for w in dump()["workers"]:
        if w["worker_id"] == wid:
            return w.get("tier_blocks", {})
    return {}


def complete(ids):
    st, body = d.post_json(fe.url + "/v1/completions",
                           {"model": "stories260K", "prompt": ids, "max_tokens": 4,
                            "temperature": 0})
    return st


def direct(w, ids):
    body = {"token_ids": ids, "sampling": {"temperature": 0},
            "stop": {"max_tokens": 4, "ignore_eos": True}}
    subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id, "--timeout",
                    "60", "dyn/backend/generate", json.dumps(body)], capture_output=True,
                   timeout=90)


def worker_dump(w):
    addr = re.search(r" generate at \S+ (\S+)", w.line).group(1)  # ENDPOINT ADDRESS
    p = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--address", addr,
                        "--timeout", "5", "dyn/backend/kv_dump"], capture_output=True,
                       text=True, timeout=20)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    return json.loads(lines[-1])["dump"] if lines else {"stored": [], "why": p.stderr}


ok = d.wait_until(lambda: sum(1 for w in dump()["workers"] if w.get("subscribed")) == 2,
                  timeout=20, step=0.2)
d.check("the router service subscribes to both workers' KV events", ok, log_of(rt)[-2000:])
if not ok:
    d.finish()

rng = random.Random(1919)
vocab = d.model_kv_shape(d.MODEL)[3]
a = [1] + [rng.randrange(3, vocab) for _ in range(48)]  # 3 blocks + 1 token
b = [1] + [rng.randrange(3, vocab) for _ in range(48)]
before = d.worker_counters(workers)
t_a = time.monotonic()
d.check("A is served through the frontend", complete(a) == 200)
after = d.worker_counters(workers)
x = [w for w in after if after[w][0] > before[w][0]]
d.check("one worker served A", len(x) == 1, f"{before} {after}")
if len(x) != 1:
    d.finish()
x = x[0]
y = [w for w in by_id if w != x][0]
ok = d.wait_until(lambda: tiers_of(x).get("G1", 0) >= 3, timeout=10, step=0.2)
d.check("the router sees A's blocks in X's G1", ok, json.dumps(dump()))

direct(by_id[x], b)  # B fills X's pool: A's blocks go to G2
ok = d.wait_until(lambda: tiers_of(x).get("G2", 0) >= 3, timeout=10, step=0.2)
d.check("dyn router --dump: A's blocks are in X's G2 now", ok, json.dumps(dump()))
txt = subprocess.run([d.DYN, "router", "--dump", "--timeout", "5"], capture_output=True,
                     text=True, timeout=20, env=dict(os.environ, DYN_STORE=d.store)).stdout
d.check("the dump's table has a G2/G3/G4 column", "G2/G3/G4" in txt and
        re.search(x + r" .* \d+/0/0 ", txt) is not None, txt)
wd = worker_dump(by_id[x])
g2 = [s for s in wd["stored"] if s.get("medium") == "G2"]
d.check("X's own kv_dump (its KV events' JSON) lists blocks with medium G2", len(g2) >= 3,
        json.dumps(wd)[:1500])

# the router counts a dispatched prompt as cached where it went for 5 s
# (KV_ROUTER_PREDICT_TTL_MS), at G1's weight: past that only the events say
time.sleep(max(0.0, t_a + 5.5 - time.monotonic()))
mark = len(log_of(rt))
before = d.worker_counters(workers)
d.check("A again is served", complete(a) == 200)
after = d.worker_counters(workers)
moved = [w for w in after if after[w][0] > before[w][0]]
d.check("A again lands on X, where its blocks are in G2", moved == [x], f"{moved} x={x}")
dec = [l for l in log_of(rt)[mark:].splitlines() if "candidates:" in l]
cands = dict(re.findall(r"([0-9a-f]{16}):overlap=(\d+),", dec[-1])) if dec else {}
costs = dict(re.findall(r"([0-9a-f]{16}):overlap=\d+,prefill=[-0-9.]+,decode=[-0-9.]+,"
                        r"cost=([-0-9.]+)", dec[-1])) if dec else {}
d.check("the decision counts 3 blocks on X, none on the other worker",
        cands.get(x) == "3" and cands.get(y) == "0", "\n".join(dec[-2:]))
# by hand: 3 full blocks; X: 3 - 3 x 0.8 = 0.6 (+ its load), the other 3
d.check("X's cost is the G2 weight's: 2.4 blocks cheaper than none",
        x in costs and y in costs and abs(float(costs[y]) - float(costs[x]) - 2.4) < 0.05,
        "\n".join(dec[-2:]))
ok = d.wait_until(lambda: d.sys_metric(by_id[x], "dyn_worker_kv_tier_onboards_total",
                                       tier="G2") == 3, timeout=5)
d.check("X read A's 3 blocks back from G2", ok, d.sys_metrics(by_id[x])[-800:])


def decision(after_mark):
    dec = [l for l in log_of(rt)[after_mark:].splitlines() if "candidates:" in l]
    return dec[-1] if dec else ""


# ---- G4: a shared directory, with new workers, router and frontend ----
for p in [fe, rt] + workers:
    p.stop()
g4 = os.path.join(d.tmp, "g4")
workers = [d.worker(WARGS + ["--kv-shared-cache-dir", g4], engine="builtin", ttl=3000)
           for _ in range(2)]
by_id = {w.id: w for w in workers}
rt = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000"],
            r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)")
fe = d.frontend(["--router-mode", "kv"])

ok = d.wait_until(lambda: sum(1 for w in dump()["workers"] if w.get("subscribed")) == 2,
                  timeout=20, step=0.2)
d.check("G4: the router subscribes to both workers", ok, log_of(rt)[-2000:])
before = d.worker_counters(workers)
t_a = time.monotonic()
d.check("G4: A is served", complete(a) == 200)
after = d.worker_counters(workers)
x = [w for w in after if after[w][0] > before[w][0]]
d.check("G4: one worker served A", len(x) == 1, f"{before} {after}")
if len(x) != 1:
    d.finish()
x = x[0]
y = [w for w in by_id if w != x][0]
d.wait_until(lambda: tiers_of(x).get("G1", 0) >= 3, timeout=10, step=0.2)
direct(by_id[x], b)  # A's blocks go to the shared G4
ok = d.wait_until(lambda: tiers_of(x).get("G4", 0) >= 3, timeout=10, step=0.2)
d.check("G4: dyn router --dump shows A's blocks in X's G4", ok, json.dumps(dump()))
time.sleep(max(0.0, t_a + 5.5 - time.monotonic()))
mark = len(log_of(rt))
before = d.worker_counters(workers)
d.check("G4: A again is served", complete(a) == 200)
after = d.worker_counters(workers)
moved = [w for w in after if after[w][0] > before[w][0]]
dec = decision(mark)
cands = dict(re.findall(r"([0-9a-f]{16}):overlap=(\d+),", dec))
costs = dict(re.findall(r"([0-9a-f]{16}):overlap=\d+,prefill=[-0-9.]+,decode=[-0-9.]+,"
                        r"cost=([-0-9.]+)", dec))
d.check("G4: the decision counts A's 3 blocks on both workers",
        cands.get(x) == "3" and cands.get(y) == "3", dec)
# by hand: 3 - 3 x 0.3 = 2.1 on each (both idle)
d.check("G4: at G4's weight on both: cost 2.1 each",
        all(abs(float(costs.get(w, -1)) - 2.1) < 0.05 for w in (x, y)), dec)
d.check("G4: one of them served it", len(moved) == 1, str(moved))
ok = len(moved) == 1 and d.wait_until(
    lambda: d.sys_metric(by_id[moved[0]], "dyn_worker_kv_tier_onboards_total", tier="G4") == 3,
    timeout=5)
d.check("G4: and read A's 3 blocks from the shared directory", ok,
        d.sys_metrics(by_id[moved[0]])[-800:] if moved else "")
d.finish()
