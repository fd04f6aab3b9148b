"""router_mock - KV-aware routing end to end with 4 mock workers.

`dyn frontend --router-mode kv` in front of four `dyn serve --engine mock`
workers (qwen3-0.6b-shape: its tokenizer, block size 64, the mock timing
model sped up 50x).  Which worker served a request, and how many of its
prompt tokens came from that worker's prefix cache, are read from each
worker's own /metrics; the router's view from the frontend's /metrics.
  - a repeated prompt, and the next turns of a chat conversation, land on
    the worker holding their prefix and hit its cache;
  - a worker restarted with an empty cache: the prompt it held is routed
    anew, then sticks to its new holder;
  - a killed worker is purged from the router's index (its indexed blocks
    go to zero) and requests keep succeeding;
  - events lost on the way (the worker's DYN_KV_EVENTS_DROP test hook skips
    one batch) are detected as a gap and repaired by a resync, after which
    the router again knows where the prefix is.
Sequential requests wait SETTLE seconds for the worker's events (flushed
every 20 ms) to reach the router.
"""
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

MODEL = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
SETTLE = 0.15
WARGS = ["--engine", "mock", "--speedup-ratio", "50", "--lease-ttl", "3000"]


def mock_worker(env=None):
    w = d.Proc(["serve", "--model", MODEL, "--system-port", "0"] + WARGS,
               r"instance ([0-9a-f]{16}) .* system port (\d+)", env=env, timeout=60)
    w.id = w.m.group(1)
    w.sys_port = int(w.m.group(2))
    return w


workers = [mock_worker() for _ in range(4)]
fe = d.frontend(["--router-mode", "kv"])


def fe_metric(name, **labels):
    return d.metric(d.http_get(fe.url + "/metrics")[1], name, **labels)


ok = d.wait_until(lambda: fe_metric("dyn_frontend_workers", model=NAME) == 4, timeout=30)
d.check("four mock workers registered behind the kv router", ok, fe.stderr())
if not ok:
    d.finish()
ok = d.wait_until(lambda: (fe_metric("dyn_frontend_router_kv_resyncs_total") or 0) >= 4)
d.check("the router applied a dump of each worker on connect", ok, fe.stderr())


def counters():
    return d.worker_counters(workers)


def post(path, body):
    req = urllib.request.Request(fe.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)


def served_by(send):
    """Run send(); the workers whose request counters moved, their cache hits."""
    before = counters()
    st, body = send()
    # a loaded machine may show the counters late: wait for one to move
    d.wait_until(lambda: any(after[w][0] > before[w][0] for after in [counters()]
                             for w in after if w in before), timeout=5)
    time.sleep(SETTLE)
    after = counters()
    moved = [w for w in after if w in before and after[w][0] > before[w][0]]
    hit = {w: after[w][1] - before[w][1] for w in moved}
    return st, moved, hit, body


def complete(prompt):
    return lambda: post("/v1/completions", {"model": NAME, "prompt": prompt, "max_tokens": 4})


WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def text(seed, n=600):
    """About n tokens of text of its own (a distinct prefix per seed)."""
    out = ["Document %d." % seed]
    i = seed
    while len(out) < n:
        out.append(WORDS[(i * 7 + len(out)) % len(WORDS)])
        i += 1
    return " ".join(out)


# 1. A repeated prompt.
A = text(1)
st, first, _, _ = served_by(complete(A))
again = [served_by(complete(A)) for _ in range(3)]
d.check("a repeated prompt lands on the worker holding its prefix",
        st == 200 and len(first) == 1 and all(s == 200 and m == first for s, m, _, _ in again),
        f"first {first}, then {[m for _, m, _, _ in again]}")
d.check("and hits that worker's prefix cache (>= 8 blocks of 64)",
        all(h.get(first[0], 0) >= 512 for _, _, h, _ in again), str([h for *_, h, _ in again]))
cached = [b.get("usage", {}).get("prompt_tokens_details", {}).get("cached_tokens")
          for _, _, _, b in again]
d.check("the response's usage reports the cached tokens the worker counted",
        cached == [h.get(first[0]) for _, _, h, _ in again], f"{cached} vs {[h for *_, h, _ in again]}")
holder_a = first[0] if first else None

# 2. A multi-turn conversation: each turn's prompt extends the previous one.
msgs = [{"role": "system", "content": text(2, 400)},
        {"role": "user", "content": "Summarise the document above in one line."}]
owners, hits = [], []
for turn in range(3):
    st, moved, hit, body = served_by(lambda: post("/v1/chat/completions",
                                                  {"model": NAME, "messages": msgs,
                                                   "max_tokens": 4}))
    owners.append(moved)
    hits.append(hit.get(moved[0], 0) if len(moved) == 1 else 0)
    reply = body["choices"][0]["message"]["content"] if st == 200 else ""
    msgs = msgs + [{"role": "assistant", "content": reply},
                   {"role": "user", "content": "And turn %d: go on." % (turn + 2)}]
d.check("every turn of a conversation lands on the same worker",
        all(len(o) == 1 for o in owners) and all(o == owners[0] for o in owners), str(owners))
d.check("later turns hit its prefix cache (>= 6 blocks)",
        all(h >= 384 for h in hits[1:]), str(hits))

# 3. Lost events: a fifth worker whose first batch of KV events is never
# sent (the DYN_KV_EVENTS_DROP test hook).  Its next batch shows the router
# a gap in event ids; the router resyncs from a dump, and then knows the
# prefix whose events were lost.
resyncs0 = fe_metric("dyn_frontend_router_kv_resyncs_total") or 0
dropper = mock_worker({"DYN_KV_EVENTS_DROP": "1"})
workers.append(dropper)
ok = d.wait_until(lambda: fe_metric("dyn_frontend_workers", model=NAME) == 5 and
                  (fe_metric("dyn_frontend_router_kv_resyncs_total") or 0) >= resyncs0 + 1)
d.check("a worker joining later is subscribed to", ok, fe.stderr())
resyncs1 = fe_metric("dyn_frontend_router_kv_resyncs_total") or 0
lost, served = None, 0
for i in range(120):    # distinct prompts until the dropper served two
    P = text(100 + i, 200)
    st, moved, _, _ = served_by(complete(P))
    if moved == [dropper.id]:
        served += 1
        lost = lost or P
        if served == 2:
            break
ok = d.wait_until(lambda: (fe_metric("dyn_frontend_router_kv_resyncs_total") or 0) > resyncs1)
d.check("a gap in a worker's event ids is detected and repaired by a resync",
        served == 2 and ok, f"dropper served {served}; resyncs {resyncs1} -> "
        f"{fe_metric('dyn_frontend_router_kv_resyncs_total')}")
if lost:
    st, moved, hit, _ = served_by(complete(lost))
    d.check("after the resync the router knows the prefix whose events were lost",
            moved == [dropper.id] and hit.get(dropper.id, 0) >= 128, f"{moved} {hit}")

# 4. Worker restart: the holder of A stops; a fresh worker (empty cache) joins.
old = next(w for w in workers if w.id == holder_a) if holder_a else None
if old:
    old.stop()
    workers.remove(old)
    workers.append(mock_worker())
    ok = d.wait_until(lambda: fe_metric("dyn_frontend_workers", model=NAME) == 5 and
                      fe_metric("dyn_frontend_router_worker_blocks", worker=holder_a) in
                      (None, 0), timeout=20)
    d.check("a stopped worker is purged from the router's index", ok,
            d.http_get(fe.url + "/metrics")[1][-2000:])
    st, moved, hit, _ = served_by(complete(A))
    d.check("after the restart the prompt is routed anew (no stale hit)",
            st == 200 and len(moved) == 1 and moved[0] != holder_a and
            hit.get(moved[0], 0) == 0, f"{moved} {hit}")
    st2, moved2, hit2, _ = served_by(complete(A))
    d.check("and then sticks to its new holder, hitting its cache",
            st2 == 200 and moved2 == moved and hit2.get(moved[0], 0) >= 512, f"{moved2} {hit2}")

# 5. A killed worker (SIGKILL: no goodbye, its lease lapses): purged, requests go on.
victim = next(w for w in workers if w is not dropper)
victim_id = victim.id
victim.p.kill()
victim.p.wait()
workers.remove(victim)
ok = d.wait_until(lambda: fe_metric("dyn_frontend_workers", model=NAME) == 4 and
                  fe_metric("dyn_frontend_router_worker_blocks", worker=victim_id) in (None, 0),
                  timeout=30)
d.check("a killed worker is purged once its lease lapses", ok)
res = [served_by(complete(text(10 + i)))[0] for i in range(4)]
d.check("requests keep succeeding on the remaining workers", res == [200] * 4, str(res))

d.finish()
