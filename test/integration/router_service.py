"""router_service - `dyn router`, the router service that frontends share.

Two builtin stories260K workers (block size 16; each worker's /metrics
counts its requests and prefix-cache hits, the independent reference for
where a request ran and whether it hit), two echo workers serving "slow"
(100 ms per token, to hold requests in flight), two frontends A and B in
`--router-mode kv --no-kv-events`, then routers started and killed:

- without a router, B's embedded router cannot know what A routed: the
  overlap it finds for A's prompt is 0 (its KV hit-rate histogram);
- with a router, both frontends use it (their metrics and log say so); a
  prompt sent through A, then through B, lands on A's worker and hits its
  prefix cache; requests in flight from both frontends are counted by the
  one router (dyn router --dump --json); the dump's indexed blocks and
  last event id per worker equal the worker's own kv_dump (dyn rpc call);
- killing the router (SIGKILL) makes the frontends fall back to their
  embedded routers (log line, metrics) and keep serving;
- an approximate-mode router (--no-kv-events) keeps A's prompt on its
  worker for B too, which the embedded-only setup above could not;
- a killed worker is purged from the router; SIGTERM stops it cleanly.
"""
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
SETTLE = 0.15
WARGS = ["--threads", "1", "--block-size", "16", "--kv-cache-tokens", "2048"]
workers = [d.worker(WARGS, engine="auto", ttl=3000) for _ in range(2)]
slow = [d.worker(["--block-size", "16"], name="slow", delay=100, ttl=3000) for _ in range(2)]
os.environ["DYN_LOG"] = "router=info,warn"
FE_ARGS = ["--router-mode", "kv", "--no-kv-events"]
fa, fb = d.frontend(FE_ARGS), d.frontend(FE_ARGS)


def log_of(p):
    p.log.flush()
    p.log.seek(0)
    return p.log.read()


def fmetric(fe, name, **labels):
    return d.metric(d.http_get(fe.url + "/metrics")[1], name, **labels)


def router(extra=()):
    r = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000"] + list(extra),
               r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)")
    r.id = r.m.group(1)
    r.sys = f"http://127.0.0.1:{r.m.group(3)}"
    return r


def dump(json_out=True):
    p = subprocess.run([d.DYN, "router", "--dump", "--timeout", "5"] +
                       (["--json"] if json_out else []),
                       capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, DYN_STORE=d.store))
    if p.returncode:
        raise RuntimeError(p.stderr)
    return json.loads(p.stdout) if json_out else p.stdout


def counters():
    return d.worker_counters(workers)


def complete(fe, prompt, max_tokens=8, model=NAME):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    req = urllib.request.Request(fe.url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)


def served_by(fe, prompt):
    """Send prompt alone: (status, workers whose counter moved, hit tokens)."""
    before = counters()
    st, _ = complete(fe, prompt)
    time.sleep(SETTLE)  # the worker's KV events reach the routers
    after = counters()
    moved = [w for w in after if w in before and after[w][0] > before[w][0]]
    return st, moved, {w: after[w][1] - before[w][1] for w in moved}


WORDS = ("the little dog ran to the park and saw a big red ball under a tree so he "
         "played with it all day long until the sun went down and his mom called him home").split()


def prompt(seed):
    return " ".join(["Story %d:" % seed] + WORDS[seed % 7:] + WORDS[:seed % 7] + WORDS)


def in_use(fe):
    return (fmetric(fe, "dyn_frontend_router_in_use", router="service"),
            fmetric(fe, "dyn_frontend_router_in_use", router="embedded"))


ok = d.wait_until(lambda: all(fmetric(f, "dyn_frontend_workers", model=NAME) == 2 and
                              fmetric(f, "dyn_frontend_workers", model="slow") == 2
                              for f in (fa, fb)))
d.check("two frontends see the workers", ok, fa.stderr())
if not ok:
    d.finish()
d.check("without a router both frontends say they use their embedded router",
        in_use(fa) == (0, 1) and in_use(fb) == (0, 1) and
        "using the embedded router" in log_of(fa), str(in_use(fa)))

# 1. Embedded only: B has no idea what A routed (approximate mode).
hit_sum = lambda fe: fmetric(fe, "dyn_frontend_router_kv_hit_rate_sum") or 0  # noqa: E731
hit_n = lambda fe: fmetric(fe, "dyn_frontend_router_kv_hit_rate_count") or 0  # noqa: E731
P0 = prompt(0)
served_by(fa, P0)
a0, b0, bn0 = hit_sum(fa), hit_sum(fb), hit_n(fb)
served_by(fa, P0)
served_by(fb, P0)
d.check("embedded only: A predicts its own prompt's cache (overlap > 0)",
        hit_sum(fa) > a0, f"{a0} -> {hit_sum(fa)}")
d.check("embedded only: B's router finds no overlap for A's prompt",
        hit_n(fb) == bn0 + 1 and hit_sum(fb) == b0, f"B hit rate sum {b0} -> {hit_sum(fb)}")

# 2. A router with KV events: both frontends route through it.
r1 = router()
ok = d.wait_until(lambda: in_use(fa) == (1, 0) and in_use(fb) == (1, 0))
d.check("with a router registered both frontends use it (metrics, log)",
        ok and "using the router service " + r1.id in log_of(fa) and
        "using the router service " + r1.id in log_of(fb), str((in_use(fa), in_use(fb))))
ok = d.wait_until(lambda: sum(1 for w in dump()["workers"]
                              if w["model"] == NAME and w["subscribed"]) == 2)
d.check("the router subscribes to both builtin workers' KV events", ok, r1.stderr())

P1 = prompt(1)
st, first, _ = served_by(fa, P1)
via_b = [served_by(fb, P1) for _ in range(3)]
d.check("a prompt sent through A, then through B, lands on A's worker",
        st == 200 and len(first) == 1 and all(s == 200 and m == first for s, m, _ in via_b),
        f"A: {first}, B: {[m for _, m, _ in via_b]}")
d.check("and hits that worker's prefix cache",
        all(h.get(first[0], 0) >= 16 for _, _, h in via_b), str([h for _, _, h in via_b]))
text = d.http_get(r1.sys + "/metrics")[1]
d.check("router metrics: decisions and KV hit rate from both frontends",
        (d.metric(text, "dyn_router_decisions_total") or 0) >= 4 and
        (d.metric(text, "dyn_router_kv_hit_rate_sum") or 0) >= 2.5 and
        (d.metric(text, "dyn_frontend_router_service_calls_total") is None),
        text[:300])
d.promtool_check("promtool check metrics (dyn router --system-port)", text)
d.check("frontends count their service calls",
        fmetric(fa, "dyn_frontend_router_service_calls_total") >= 1 and
        fmetric(fb, "dyn_frontend_router_service_calls_total") >= 3, "")

# 3. In-flight load from both frontends is counted by the one router.
def slow_req(fe):
    return complete(fe, "one two three four five six seven eight nine ten " * 6, 40,
                    model="slow")[0]


def slow_inflight():
    ws = [w for w in dump()["workers"] if w["model"] == "slow"]
    return sum(w["inflight"] for w in ws)


with concurrent.futures.ThreadPoolExecutor(6) as ex:
    futs = [ex.submit(slow_req, fe) for fe in (fa, fb, fa, fb, fa, fb)]
    seen = d.wait_until(lambda: slow_inflight() == 6, timeout=10, step=0.1)
    res = [f.result() for f in futs]
d.check("six requests in flight from two frontends: the router counts six",
        seen and res == [200] * 6, f"{res}")
ok = d.wait_until(lambda: slow_inflight() == 0 and dump()["router"]["inflight"] == 0)
d.check("and none once they finished", ok, "")


# 4. The dump agrees with the workers' own view.
def worker_dump(w):
    addr = re.search(r" generate at \S+ (\S+)", w.line).group(1)  # ENDPOINT ADDRESS
    p = subprocess.run([d.DYN, "rpc", "call", "--address", addr, "--timeout",
                        "5", "dyn/backend/kv_dump"], capture_output=True, text=True,
                       timeout=20, env=dict(os.environ, DYN_STORE=d.store))
    j = json.loads(p.stdout.strip().splitlines()[-1])["dump"]
    return j["last_event_id"], sum(len(s["blocks"]) for s in j["stored"])


def agree():
    mine = {w["worker_id"]: (w["last_event_id"], w["blocks"]) for w in dump()["workers"]}
    theirs = {w.id: worker_dump(w) for w in workers}
    return all(mine.get(k) == v for k, v in theirs.items()) and \
        any(v[1] > 0 for v in theirs.values()), mine, theirs


ok = d.wait_until(lambda: agree()[0], timeout=10, step=0.2)
_, mine, theirs = agree()
d.check("router --dump: blocks and last event id equal each worker's kv_dump", ok,
        f"router {mine}, workers {theirs}")
table = dump(json_out=False)
d.check("router --dump prints one line per worker with its numbers",
        all(w.id in table for w in workers + slow) and "LAST_EVENT" in table and
        all(f" {theirs[w.id][0]} " in table for w in workers), table)
dbg = json.loads(d.http_get(r1.sys + "/debug/workers")[1])
d.check("GET /debug/workers serves the same view",
        {w["worker_id"] for w in dbg["workers"]} == {w.id for w in workers + slow}, str(dbg))

# 5. Kill the router: the frontends fall back and keep serving.
r1.stop(signal.SIGKILL)
res = [complete(fe, prompt(s), 4)[0] for s in range(3) for fe in (fa, fb)]
d.check("after the router is killed requests keep succeeding", res == [200] * 6, str(res))
ok = d.wait_until(lambda: in_use(fa) == (0, 1) and in_use(fb) == (0, 1), timeout=15)
d.check("the frontends say they use their embedded routers again (log, metrics)",
        ok and "using the embedded router" in log_of(fa).split(r1.id, 1)[-1],
        log_of(fa)[-800:])

# 6. An approximate-mode router: only a shared one can get this right.
r2 = router(["--no-kv-events"])
ok = d.wait_until(lambda: in_use(fa) == (1, 0) and in_use(fb) == (1, 0))
P2 = prompt(2)
st, first, _ = served_by(fa, P2)
via_b = [served_by(fb, P2) for _ in range(3)]
text = d.http_get(r2.sys + "/metrics")[1]
d.check("--no-kv-events router: A's prompt sent through B lands on A's worker",
        ok and st == 200 and len(first) == 1 and all(m == first for _, m, _ in via_b),
        f"A: {first}, B: {[m for _, m, _ in via_b]}")
d.check("--no-kv-events router: it predicted the overlap (hit rate) with no events",
        (d.metric(text, "dyn_router_kv_hit_rate_sum") or 0) >= 2.5 and
        d.metric(text, "dyn_router_kv_events_applied_total") == 0 and
        not any(w["subscribed"] for w in dump()["workers"]), text[-600:])

# 7. A killed worker is purged from the router.
victim = next(w for w in workers if w.id == first[0])
victim.stop(signal.SIGKILL)
ok = d.wait_until(lambda: victim.id not in {w["worker_id"] for w in dump()["workers"]},
                  timeout=15)
d.check("a killed worker is purged from the router", ok and
        "purged from the index" in log_of(r2), r2.stderr()[-600:])
res = [complete(fe, P2, 4)[0] for fe in (fa, fb)]
d.check("its prefix is then served by the other worker", res == [200, 200], str(res))

# 8. SIGTERM: a clean exit, and the frontends notice at once.
rc = r2.stop()
d.check("SIGTERM stops the router cleanly", rc == 0, r2.stderr()[-600:])
ok = d.wait_until(lambda: in_use(fa) == (0, 1), timeout=5)
d.check("its record goes with it: the frontend uses its embedded router", ok, "")
d.finish()
