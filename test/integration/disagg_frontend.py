"""disagg_frontend - the frontend's orchestration of disaggregated serving
(docs/disaggregation.md) end to end, with real workers.

Mock workers (qwen3-0.6b-shape, `--engine mock`), 2 prefill + 2 decode,
behind `dyn frontend --router-mode kv --max-local-prefill-length 64` (and
for a while a round-robin frontend too):
  - the pools show in /metrics (dyn_frontend_workers{role}), /v1/models
    (the "dyn" extension) and `dyn rpc ls` (ROLE);
  - prompts of fewer than 64 tokens are prefilled on the decode worker
    (local_short), longer ones on a prefill worker (remote): checked in
    the frontend's decision counts and, independently, in the workers' own
    counts (prefill workers' requests, decode workers' remote prefills);
  - a long prompt sent again finds its blocks on the decode worker that
    fetched them (its KV events): local_short, served from its cache;
  - 32 concurrent requests, half of them disaggregated, succeed;
  - round-robin takes each pool in turn, with the same decisions; a decode
    worker SIGKILLed: the request sent to it is routed again, prefilled
    again;
  - the prefill workers SIGKILLed: long requests still succeed (the decode
    worker prefills), the failed remote prefills are counted; once their
    records are gone, every request is local_no_prefill and succeeds;
  - a prefill worker of another block size: the frontend warns, naming both
    workers, counts it as a layout mismatch and never sends it a request;
  - a prefill worker 1000x slower than the timing model: a frontend with
    --prefill-timeout 500 answers within seconds, counts the timeout and
    cancels the prefill on the worker; a client that leaves during the
    remote prefill cancels it there too.
Builtin workers (stories260K): an agg worker serves the model as "ref", a
prefill and a decode worker serve it as "dis"; greedy answers to long
prompts through "dis" (prefilled remotely: the decode worker says it
fetched them) equal those through "ref", token for token.  Then a router
service (`dyn router --max-local-prefill-length 32`): the frontend routes
through it, its decisions (long: remote, short: local_short) are counted
by both, and `dyn router --dump` shows the workers' pools.
"""
import concurrent.futures
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
MOCK = "qwen3-0.6b-shape"
LOCAL_MAX = 64
TTL = 2000


def worker(role, model, name, engine="mock", extra=()):
    args = ["serve", "--model", model, "--served-model-name", name, "--engine", engine,
            "--role", role, "--system-port", "0", "--lease-ttl", str(TTL)]
    if engine == "mock":
        args += ["--speedup-ratio", "50"]
    args += list(extra)
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


def wmetric(w, name, **labels):
    return d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1], name,
                    **labels) or 0


def wsum(ws, name, **labels):
    return sum(wmetric(w, name, **labels) for w in ws if w.p.poll() is None)


def complete(fe, model, prompt, max_tokens=8, timeout=60):
    """(status, body) of a greedy /v1/completions request."""
    return d.post_json(fe.url + "/v1/completions",
                       {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                        "temperature": 0}, timeout)


def ok_answer(res, max_tokens=8):
    st, body = res
    return st == 200 and body["usage"]["completion_tokens"] == max_tokens


rng = random.Random(20261207)


def prompt_ids(n):
    """A prompt of n token ids no earlier prompt starts with."""
    return [rng.randrange(1000, 30000) for _ in range(n)]


fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", str(LOCAL_MAX),
                 "--prefill-timeout", "10000"])


def fmetrics():
    return d.http_get(fe.url + "/metrics")[1]


def fmetric(name, **labels):
    return d.metric(fmetrics(), name, **labels) or 0


def decisions():
    t = fmetrics()
    return {k: d.metric(t, "dyn_frontend_disagg_decisions_total", decision=k) or 0
            for k in ("remote", "local_short", "local_queue", "local_no_prefill")}


prefill = [worker("prefill", SHAPE, MOCK) for _ in range(2)]
decode = [worker("decode", SHAPE, MOCK) for _ in range(2)]
ok = d.wait_until(lambda: fmetric("dyn_frontend_workers", model=MOCK, role="prefill") == 2 and
                  fmetric("dyn_frontend_workers", model=MOCK, role="decode") == 2, timeout=30)
d.check("2 prefill and 2 decode workers form the pools", ok, fe.stderr())
if not ok:
    d.finish()

st, body = d.http_get(fe.url + "/v1/models")
pools = [m.get("dyn", {}).get("pools") for m in json.loads(body)["data"] if m["id"] == MOCK]
d.check("/v1/models shows the pools", pools == [{"agg": 0, "prefill": 2, "decode": 2}],
        body)
ls = subprocess.run([d.DYN, "rpc", "ls", "--store", d.store], capture_output=True, text=True)
roles = {line.split()[1]: line.split()[3] for line in ls.stdout.splitlines()[1:]
         if len(line.split()) >= 5}
d.check("dyn rpc ls shows each worker's role",
        all(roles.get(w.id) == "prefill" for w in prefill) and
        all(roles.get(w.id) == "decode" for w in decode), ls.stdout + ls.stderr)

# ---- the decision follows the prompt's length ---------------------------------------------
before = decisions()
pre_served = wsum(prefill, "dyn_worker_requests_total")
remote_filled = wsum(decode, "dyn_worker_prefill_total", where="remote")
short = [complete(fe, MOCK, prompt_ids(20)) for _ in range(4)]
long_ = [complete(fe, MOCK, prompt_ids(300)) for _ in range(4)]
d.check("short and long requests succeed", all(map(ok_answer, short + long_)),
        [r for r in short + long_ if not ok_answer(r)][:1])
after = decisions()
d.check("short prompts are local_short, long ones remote",
        after["local_short"] - before["local_short"] == 4 and
        after["remote"] - before["remote"] == 4, f"{before} -> {after}")
d.check("the prefill workers served the long prompts",
        wsum(prefill, "dyn_worker_requests_total") - pre_served == 4,
        f"{pre_served} -> {wsum(prefill, 'dyn_worker_requests_total')}")
d.check("the decode workers took their KV from the prefill workers",
        wsum(decode, "dyn_worker_prefill_total", where="remote") - remote_filled == 4,
        f"{remote_filled} -> {wsum(decode, 'dyn_worker_prefill_total', where='remote')}")
d.check("no remote prefill failed",
        sum(fmetric("dyn_frontend_remote_prefill_failures_total", cause=c)
            for c in ("error", "timeout", "no_kv_source")) == 0, fmetrics()[-2000:])

# A long prompt again: its blocks are now cached on the decode worker that
# fetched them (its KV events say so), so it goes there and is short.
p = prompt_ids(300)
before = decisions()
hits = wsum(decode, "dyn_worker_prefix_cache_hit_tokens_total")
first = complete(fe, MOCK, p)
time.sleep(0.3)
again = complete(fe, MOCK, p)
after = decisions()
d.check("a repeated long prompt is cached on its decode worker: local_short the second time",
        ok_answer(first) and ok_answer(again) and
        after["remote"] - before["remote"] == 1 and
        after["local_short"] - before["local_short"] == 1 and
        wsum(decode, "dyn_worker_prefix_cache_hit_tokens_total") - hits >= 256,
        f"{before} -> {after}, hits {hits} -> "
        f"{wsum(decode, 'dyn_worker_prefix_cache_hit_tokens_total')}")

before = decisions()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    res = list(ex.map(lambda n: complete(fe, MOCK, prompt_ids(n)), [20, 300] * 16))
after = decisions()
d.check("32 concurrent requests, half of them disaggregated, succeed",
        all(map(ok_answer, res)) and after["remote"] - before["remote"] == 16 and
        after["local_short"] - before["local_short"] == 16,
        f"{[r for r in res if not ok_answer(r)][:1]} {before} -> {after}")

# ---- round-robin: the same decisions (the whole prompt counts as uncached), each pool in turn -
fe_rr = d.frontend(["--max-local-prefill-length", str(LOCAL_MAX)])
ok = d.wait_until(lambda: d.metric(d.http_get(fe_rr.url + "/metrics")[1], "dyn_frontend_workers",
                                   model=MOCK, role="prefill") == 2)
served = [wmetric(w, "dyn_worker_requests_total") for w in prefill + decode]
res = [complete(fe_rr, MOCK, prompt_ids(n)) for n in (20, 300, 20, 300)]
t = d.http_get(fe_rr.url + "/metrics")[1]
now = [wmetric(w, "dyn_worker_requests_total") for w in prefill + decode]
d.check("round-robin: short prompts local_short, long ones remote, each pool in turn",
        ok and all(map(ok_answer, res)) and
        d.metric(t, "dyn_frontend_disagg_decisions_total", decision="local_short") == 2 and
        d.metric(t, "dyn_frontend_disagg_decisions_total", decision="remote") == 2 and
        [b - a for a, b in zip(served, now)] == [1, 1, 2, 2], f"{served} -> {now}")

# A decode worker dies (its record stays until its lease ends): the request
# sent to it is routed again, with a decision and a prefill of its own.
decode[1].stop(signal.SIGKILL)
t0 = d.metric(d.http_get(fe_rr.url + "/metrics")[1], "dyn_frontend_disagg_decisions_total",
              decision="remote")
res = [complete(fe_rr, MOCK, prompt_ids(300)) for _ in range(2)]
t1 = d.metric(d.http_get(fe_rr.url + "/metrics")[1], "dyn_frontend_disagg_decisions_total",
              decision="remote")
d.check("a dead decode worker: the request is routed again with a new prefill",
        all(map(ok_answer, res)) and t1 - t0 == 3, f"{res} {t0} -> {t1}")
fe_rr.stop()
ok = d.wait_until(lambda: fmetric("dyn_frontend_workers", model=MOCK, role="decode") == 1,
                  timeout=TTL / 1000 + 10)
d.check("the dead decode worker leaves the pool", ok)

# ---- the prefill workers die ------------------------------------------------------------------
for w in prefill:
    w.stop(signal.SIGKILL)
before = decisions()
fails = fmetric("dyn_frontend_remote_prefill_failures_total")
res = [complete(fe, MOCK, prompt_ids(300)) for _ in range(3)]
d.check("with the prefill workers killed, long requests still succeed",
        all(map(ok_answer, res)), [r for r in res if not ok_answer(r)][:1])
after = decisions()
failed = fmetric("dyn_frontend_remote_prefill_failures_total") - fails
d.check("the failed remote prefills are counted (the rest: no prefill worker left)",
        failed >= 1 and failed + after["local_no_prefill"] - before["local_no_prefill"] == 3,
        f"{failed} failed; {before} -> {after}")

ok = d.wait_until(lambda: fmetric("dyn_frontend_workers", model=MOCK, role="prefill") == 0,
                  timeout=TTL / 1000 + 10)
d.check("the dead prefill workers leave the pool", ok)
before = decisions()
res = [complete(fe, MOCK, prompt_ids(n)) for n in (20, 300, 300)]
after = decisions()
d.check("without prefill workers every request is local_no_prefill and succeeds",
        all(map(ok_answer, res)) and
        after["local_no_prefill"] - before["local_no_prefill"] == 3, f"{before} -> {after} {res}")

# ---- a prefill worker of another layout ---------------------------------------------------------
odd = worker("prefill", SHAPE, MOCK, extra=["--block-size", "32"])
ok = d.wait_until(lambda: fmetric("dyn_frontend_kv_layout_mismatches") == 1, timeout=20)
log = fe.stderr()
warned = [line for line in log.splitlines() if "do not share a KV layout" in line]
d.check("a prefill worker of another block size is counted as a layout mismatch", ok,
        fmetrics()[-1500:])
d.check("the mismatch is logged once, naming both workers and both layouts",
        len(warned) == 1 and odd.id in warned[0] and any(w.id in warned[0] for w in decode) and
        len(re.findall(r"\(L\d+-KV\d+x\d+-B\d+-\w+\)", warned[0])) == 2 and
        "-B32-" in warned[0], "\n".join(warned) or log[-1500:])
before = decisions()
served = wmetric(odd, "dyn_worker_requests_total")
res = [complete(fe, MOCK, prompt_ids(300)) for _ in range(3)]
after = decisions()
d.check("requests still succeed, prefilled by the decode workers, never on the odd worker",
        all(map(ok_answer, res)) and wmetric(odd, "dyn_worker_requests_total") == served and
        after["local_no_prefill"] - before["local_no_prefill"] == 3, f"{before} -> {after}")
d.check("the refused worker is not in the prefill pool",
        fmetric("dyn_frontend_workers", model=MOCK, role="prefill") == 0)

# ---- a prefill worker too slow: the timeout, and a client that leaves -----------------------
# 1000 times slower than the timing model: a 300-token prompt takes ~20 s.
slow = worker("prefill", SHAPE, MOCK, extra=["--speedup-ratio", "0.001"])
fe_quick = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", str(LOCAL_MAX),
                       "--prefill-timeout", "500"])
ok = d.wait_until(lambda: all(d.metric(d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers",
                                       model=MOCK, role="prefill") == 1 for f in (fe, fe_quick)),
                  timeout=20)
d.check("a slow prefill worker joins the pool", ok)
cancelled = wmetric(slow, "dyn_worker_requests_cancelled_total")
t0 = time.time()
res = complete(fe_quick, MOCK, prompt_ids(300))
took = time.time() - t0
t = d.http_get(fe_quick.url + "/metrics")[1]
d.check("a remote prefill past --prefill-timeout falls back to the decode worker",
        ok_answer(res) and took < 5 and
        d.metric(t, "dyn_frontend_remote_prefill_failures_total", cause="timeout") == 1 and
        d.metric(t, "dyn_frontend_disagg_decisions_total", decision="remote") == 1,
        f"{res} in {took:.1f} s")
d.check("the abandoned prefill is cancelled on the prefill worker",
        d.wait_until(lambda: wmetric(slow, "dyn_worker_requests_cancelled_total") ==
                     cancelled + 1, timeout=10))
gone = fmetric("dyn_frontend_requests_total", model=MOCK, status="499")
# the abandoned prefill stays active until the mock's 20 s step ends
active = wmetric(slow, "dyn_worker_active_requests")
sock = socket.create_connection(("127.0.0.1", fe.port))
body = json.dumps({"model": MOCK, "prompt": prompt_ids(300), "max_tokens": 8,
                   "stream": True}).encode()
sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body) + body)
ok = d.wait_until(lambda: wmetric(slow, "dyn_worker_active_requests") == active + 1,
                  timeout=10)
sock.close()
d.check("a client leaving during the remote prefill cancels it on the prefill worker",
        ok and d.wait_until(lambda: wmetric(slow, "dyn_worker_requests_cancelled_total") ==
                            cancelled + 2, timeout=10) and
        d.wait_until(lambda: fmetric("dyn_frontend_requests_total", model=MOCK,
                                     status="499") == gone + 1),
        f"active {wmetric(slow, 'dyn_worker_active_requests')}")
slow.stop()
fe_quick.stop()

# ---- builtin engine: remote prefill answers as the aggregated worker does -------------------
ref = worker("agg", d.MODEL, "ref", engine="builtin")
dis = [worker("prefill", d.MODEL, "dis", engine="builtin"),
       worker("decode", d.MODEL, "dis", engine="builtin")]
ok = d.wait_until(lambda: fmetric("dyn_frontend_workers", model="dis", role="prefill") == 1 and
                  fmetric("dyn_frontend_workers", model="dis", role="decode") == 1 and
                  fmetric("dyn_frontend_workers", model="ref", role="agg") == 1, timeout=30)
d.check("builtin workers registered", ok, fe.stderr())
texts = ["Once upon a time, there was a little girl named Lily who loved to play outside "
         "in the park with her friends and her dog. " * 2 + "One day, she saw",
         "Tom had a red ball. He liked to throw it high in the sky and catch it. " * 3 +
         "Then the ball"]
remote0 = wmetric(dis[1], "dyn_worker_prefill_total", where="remote")
same = True
why = ""
for i, text in enumerate(texts * 2):
    a = complete(fe, "ref", text, max_tokens=16)
    b = complete(fe, "dis", text, max_tokens=16)
    if not (ok_answer(a, 16) and ok_answer(b, 16) and
            a[1]["choices"][0]["text"] == b[1]["choices"][0]["text"]):
        same = False
        why = f"prompt {i}: {a} vs {b}"
d.check("greedy answers through prefill + decode equal the agg worker's", same, why)
d.check("the builtin decode worker took the prompts' KV from the prefill worker",
        wmetric(dis[1], "dyn_worker_prefill_total", where="remote") - remote0 >= 2,
        f"{remote0} -> {wmetric(dis[1], 'dyn_worker_prefill_total', where='remote')}")

# n samples through prefill + decode: the first is prefilled remotely, the
# others start on its decode worker once it has a token and take the
# prompt's blocks from that worker's cache; seeded, they answer as the agg
# worker's samples
remote0 = wmetric(dis[1], "dyn_worker_prefill_total", where="remote")
hits0 = wmetric(dis[1], "dyn_worker_prefix_cache_hit_tokens_total")
body = {"prompt": "A cat sat on a mat and looked at the birds in the big tree. " * 3 + "The cat",
        "max_tokens": 12, "temperature": 1.0, "n": 3, "seed": 5}
a = d.post_json(fe.url + "/v1/completions", dict(body, model="ref"))
b = d.post_json(fe.url + "/v1/completions", dict(body, model="dis"))
remote = wmetric(dis[1], "dyn_worker_prefill_total", where="remote") - remote0
hits = wmetric(dis[1], "dyn_worker_prefix_cache_hit_tokens_total") - hits0
texts_a = [c["text"] for c in a[1]["choices"]] if a[0] == 200 else a
texts_b = [c["text"] for c in b[1]["choices"]] if b[0] == 200 else b
d.check("n=3 through prefill + decode: one remote prefill, the other samples hit the decode "
        "worker's cache, the choices equal the agg worker's",
        texts_a == texts_b and len(set(texts_b)) == 3 and remote == 1 and hits > 0,
        f"{texts_a} vs {texts_b}, remote {remote}, hits {hits}")

# ---- the router service decides the same way and names the prefill worker -------------------
r = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000", "--max-local-prefill-length",
            "32"], r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)")
rsys = f"http://127.0.0.1:{r.m.group(3)}"


def rdecisions():
    t = d.http_get(rsys + "/metrics")[1]
    return {k: d.metric(t, "dyn_router_disagg_decisions_total", decision=k) or 0
            for k in ("remote", "local_short")}


ok = d.wait_until(lambda: fmetric("dyn_frontend_router_in_use", router="service") == 1)
d.check("the frontend routes through the router service", ok, fe.stderr())
rbefore, before = rdecisions(), decisions()
remote0 = wmetric(dis[1], "dyn_worker_prefill_total", where="remote")
a, b = complete(fe, "dis", texts[0], max_tokens=16), complete(fe, "dis", "Hi", max_tokens=16)
rafter, after = rdecisions(), decisions()
d.check("through the router: a long prompt remote, a short one local_short",
        ok_answer(a, 16) and ok_answer(b, 16) and
        rafter["remote"] - rbefore["remote"] == 1 and
        rafter["local_short"] - rbefore["local_short"] == 1 and
        after["remote"] - before["remote"] == 1 and
        after["local_short"] - before["local_short"] == 1 and
        wmetric(dis[1], "dyn_worker_prefill_total", where="remote") - remote0 == 1,
        f"router {rbefore} -> {rafter}, frontend {before} -> {after}")
p = subprocess.run([d.DYN, "router", "--dump", "--timeout", "5"], capture_output=True,
                   text=True, timeout=20, env=dict(os.environ, DYN_STORE=d.store))
rows = {line.split()[1]: line.split()[2] for line in p.stdout.splitlines()[2:]
        if len(line.split()) > 3}
d.check("dyn router --dump shows the roles", rows.get(dis[0].id) == "prefill" and
        rows.get(dis[1].id) == "decode" and rows.get(ref.id) == "decode", p.stdout + p.stderr)
d.promtool_check("the frontend's /metrics passes promtool", fmetrics())
d.finish()
