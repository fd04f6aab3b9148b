"""disagg_netns - disaggregated serving across hosts: the prefill and the
decode worker each in a network namespace of its own, joined by veth pairs
to a bridge in a third one, so that the KV blocks cross real interfaces.

    root namespace: frontend (HTTP on 127.0.0.1), the agg reference worker,
                    veth A.1 ---+
    prefill namespace: veth A.2 -- bridge (switch namespace)
    decode namespace:  veth A.3 ---+

The workers listen on and advertise their own namespace's address (--host:
the request plane, the system port and the KV data port); the file store
in a temporary folder is shared, as the filesystem is.  Each worker can
reach the others only over the bridge.

Checked, for stories260K over --kv-transport tcp (and ucx, where `dyn
version` finds it): the prefill worker's instance record advertises its
namespace's address; greedy answers through the frontend (every prompt
prefilled remotely: --max-local-prefill-length 0) equal those of the agg
worker, token for token, logprobs within 1e-5; the frontend counts them
remote, the decode worker fetched every prompt's KV (no fallback), the
bytes it fetched are those the prefill worker lent, and at least as many
arrived on the decode namespace's interface (its kernel counters); no hold
is left.  UCX is kept to tcp there (UCX_TLS), as between hosts: the
namespaces share the host's memory, which UCX would copy KV through.  Skipped when namespaces cannot be made (not root, no ip(8), no
permission).  The namespaces, their interfaces and the processes are
removed at exit, whatever happens.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import netns  # noqa: E402

MAX_TOKENS = 12
addrs = netns.setup(("pre", "dec"))
NS = netns.NS
rx_bytes = netns.rx_bytes


def worker(role, name, where, transport=None):
    args = ["serve", "--model", d.MODEL, "--served-model-name", name, "--role", role,
            "--engine", "builtin", "--system-port", "0", "--lease-ttl", "3000",
            "--threads", "1", "--kv-cache-dtype", "f32"]  # 1e-5: the F32 pool's bound
    wrap = ()
    if where != "root":
        args += ["--host", addrs[where][0]]
        wrap = ("ip", "netns", "exec", NS[where])
    if transport:
        args += ["--kv-transport", transport]
    # Namespaces share this host's memory, as hosts do not: UCX kept to
    # tcp, or a decode worker copies the prefill worker's pool from
    # shared memory and no KV byte crosses the bridge.
    env = {"UCX_TLS": "tcp"} if transport == "ucx" else None
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60, wrap=wrap,
               env=env)
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    w.host = "127.0.0.1" if where == "root" else addrs[where][0]
    return w


wm = d.sys_metric




fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0",
                 "--prefill-timeout", "20000"])


def decisions():
    t = d.http_get(fe.url + "/metrics")[1]
    return {k: d.metric(t, "dyn_frontend_disagg_decisions_total", decision=k) or 0
            for k in ("remote", "local_short", "local_queue", "local_no_prefill")}


def complete(model, prompt):
    status, a = d.post_json(fe.url + "/v1/completions",
                            {"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS,
                             "temperature": 0, "logprobs": 1})
    if status != 200:
        return f"HTTP {status}: {a[:300]}" if status else a
    c = a["choices"][0]
    return c["logprobs"]["tokens"], c["logprobs"]["token_logprobs"], c["text"], \
        c["finish_reason"]


def same(got, want):
    return not isinstance(got, str) and not isinstance(want, str) and \
        got[0] == want[0] and got[2:] == want[2:] and len(got[1]) == len(want[1]) and \
        all(abs(a - b) <= 1e-5 for a, b in zip(got[1], want[1]))


ucx_ok = re.search(r"UCX:\s+version", subprocess.run([d.DYN, "version"], capture_output=True,
                                                     text=True).stdout)
transports = ["tcp"] + (["ucx"] if ucx_ok else [])
if not ucx_ok:
    d.skip("ucx transport", "UCX not found by `dyn version` (Debian libucx0)")

ref = worker("agg", "ref", "root")
pairs = {t: (worker("prefill", f"dis-{t}", "pre", t), worker("decode", f"dis-{t}", "dec", t))
         for t in transports}


def ready():
    t = d.http_get(fe.url + "/metrics")[1]
    return d.metric(t, "dyn_frontend_workers", model="ref", role="agg") == 1 and \
        all(d.metric(t, "dyn_frontend_workers", model=f"dis-{k}", role=r) == 1
            for k in transports for r in ("prefill", "decode"))


ok = d.wait_until(ready, timeout=30)
d.check("the frontend in the root namespace sees the workers of both namespaces", ok,
        fe.stderr())
if not ok:
    d.finish()

story = ("Once upon a time, there was a little girl named Lily. She loved to play outside in "
         "the park with her friends and her big brown dog. ")
prompts = ["Tom had a red ball.", story + "One day, she saw", story + "Then it began to rain,",
           "The old man sat on the bench. " * 8 + "He was waiting for",
           "There was a big tree in the garden. Birds lived in it and sang. " * 6,
           "Mia found a shiny key under her bed.", story + "One day, she saw"]
want = [complete("ref", p) for p in prompts]
d.check("the agg worker answers", all(not isinstance(a, str) for a in want), want[:2])

for t in transports:
    pre, dec = pairs[t]
    kv = d.instance_meta(pre).get("kv", {})
    d.check(f"{t}: the prefill worker advertises its namespace's address for KV",
            re.fullmatch(re.escape(addrs["pre"][0]) + r":\d+", kv.get("tcp", "")) is not None
            and kv.get("ucx") is (t == "ucx"), f"{kv}")
    rx0 = rx_bytes(NS["dec"], addrs["dec"][1])
    before = decisions()
    got = [complete(f"dis-{t}", p) for p in prompts]
    after = decisions()
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if not same(g, w)]
    d.check(f"{t}: answers across namespaces equal the agg worker's token for token, "
            "logprobs within 1e-5", not bad, bad[:1])
    d.check(f"{t}: every prompt was prefilled in the prefill namespace",
            after["remote"] - before["remote"] == len(prompts) and
            wm(pre, "dyn_worker_requests_total") == len(prompts), f"{before} -> {after}")
    fetched = wm(dec, "dyn_worker_kv_transfer_bytes_total", direction="in")
    lent = wm(pre, "dyn_worker_kv_transfer_bytes_total", direction="out")
    rx = rx_bytes(NS["dec"], addrs["dec"][1]) - rx0
    d.check(f"{t}: the decode worker fetched every prompt's KV across the bridge",
            wm(dec, "dyn_worker_prefill_total", where="remote") == len(prompts) and
            wm(dec, "dyn_worker_kv_transfers_total", direction="in", result="ok") ==
            len(prompts) and wm(dec, "dyn_worker_kv_fallbacks_total") == 0 and
            fetched > 0 and fetched == lent and rx0 >= 0 and rx >= fetched,
            f"fetched {fetched}, lent {lent}, {rx} bytes received on "
            f"{addrs['dec'][1]}; {dec.stderr()[-1500:]}")
    d.check(f"{t}: the prefill worker holds no KV afterwards",
            d.wait_until(lambda: wm(pre, "dyn_worker_kv_holds") == 0, timeout=5),
            f"holds {wm(pre, 'dyn_worker_kv_holds')}")

d.check("no worker died", all(p.p.poll() is None for p in d.procs),
        [p.stderr() for p in d.procs if p.p.poll() is not None][:1])
d.finish()
