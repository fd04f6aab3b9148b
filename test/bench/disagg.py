#!/usr/bin/env python3
"""disagg.py - disaggregated against aggregated serving ('make bench', via
disagg.sh).

The same workload, at the same request rate (one Poisson schedule,
replayed with `dyn bench --fixed-schedule`), through `dyn frontend
--router-mode kv` in front of
  - disagg: prefill and decode pools (dyn-serve(1) DISAGGREGATED SERVING:
    prompts longer than the frontend's --max-local-prefill-length, 512
    here, B_LOCAL_MAX (8) for the builtin engine, are prefilled on a
    prefill worker, their KV fetched by the decode worker);
  - agg: as many aggregated workers.
The workload mixes two kinds of request, exactly half each, in random
order:
long prompts with short outputs (LONG_ISL / LONG_PROMPT_OSL) and short
prompts with long outputs (SHORT_ISL / LONG_OSL); every prompt is unique
(no prefix cache hits).  Reported per layout: TTFT p50/p99 of each kind,
ITL p50/p99 of the long outputs (the streams a co-scheduled prefill
stalls), request and output token throughput, and each disagg figure as a
ratio to agg's (below 1 is better for latencies, above 1 for
throughput).

1. Mock workers (qwen3-0.6b-shape, --engine mock: the real scheduler and
   KV block manager, Dynamo's mocker timing model; compute SPEEDUP times
   faster than the model, default 1, and the modelled KV transfer
   bandwidth (25 GB/s) scaled by the same factor): 2 prefill + 2 decode
   against 4 agg, REQUESTS (default 120) at RATE req/s (default 10),
   prompts of LONG_ISL (4000) / SHORT_ISL (150) tokens, outputs of
   LONG_PROMPT_OSL (32) / LONG_OSL (400) tokens.
2. Builtin engine on dummy weights of qwen3-0.6b-shape (--load-format
   dummy, 1 thread each; KV blocks moved over TCP for real), small scale:
   1 prefill + 1 decode against 2 agg, B_REQUESTS (default 6) at B_RATE
   req/s (default 0.3), prompts of B_LONG_ISL (96) / B_SHORT_ISL (16)
   tokens, outputs of 4 / B_LONG_OSL (32) tokens.  This host's cores are
   shared by every worker: the layouts differ in where the work runs, not
   in how much hardware it gets.  BUILTIN=0 leaves it out (MOCK=0 the
   mock part).
"""
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402
from benchrun import BLOCK_LEN, MODEL, NAME, new_deployment, replay  # noqa: E402

env = os.environ.get

SPEEDUP = float(env("SPEEDUP", "1"))
REQUESTS = int(env("REQUESTS", "120"))
RATE = float(env("RATE", "10"))
LONG_ISL = int(env("LONG_ISL", "4000"))
LONG_PROMPT_OSL = int(env("LONG_PROMPT_OSL", "32"))
SHORT_ISL = int(env("SHORT_ISL", "150"))
LONG_OSL = int(env("LONG_OSL", "400"))
MOCK = env("MOCK", "1") != "0"
BUILTIN = env("BUILTIN", "1") != "0"
B_REQUESTS = int(env("B_REQUESTS", "6"))
B_RATE = float(env("B_RATE", "0.3"))
B_LONG_ISL = int(env("B_LONG_ISL", "96"))
B_SHORT_ISL = int(env("B_SHORT_ISL", "16"))
B_LONG_OSL = int(env("B_LONG_OSL", "32"))
B_LOCAL_MAX = int(env("B_LOCAL_MAX", "8"))


def trace(path, n, rate, long_isl, long_prompt_osl, short_isl, long_osl, seed):
    """A Mooncake-style trace (dyn-bench(1) --trace): Poisson arrivals at
    rate, half long prompts, half long outputs, every prompt unique."""
    rng = random.Random(seed)
    kinds = [True] * (n // 2) + [False] * (n - n // 2)
    rng.shuffle(kinds)
    t, next_id = 0.0, 1
    with open(path, "w") as f:
        for long_prompt in kinds:
            isl = long_isl if long_prompt else short_isl
            n_ids = -(-isl // BLOCK_LEN)
            f.write(json.dumps({"timestamp": round(t * 1000, 3), "input_length": isl,
                                "output_length": long_prompt_osl if long_prompt else long_osl,
                                "hash_ids": list(range(next_id, next_id + n_ids))}) + "\n")
            next_id += n_ids
            t += rng.expovariate(rate)


def run(label, roles, worker_args, trace_file, long_isl, local_max):
    """Serve with one worker per entry of roles, replay trace_file; the
    figures of the run."""
    new_deployment(label)
    workers = []
    for role in roles:
        w = d.Proc(["serve", "--model", MODEL, "--role", role, "--system-port", "0"] +
                   worker_args(role), r"instance ([0-9a-f]{16}) .* system port (\d+)",
                   timeout=120)
        w.sys_port, w.role = int(w.m.group(2)), role
        workers.append(w)
    fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", str(local_max)])

    def fmetrics():
        return d.http_get(fe.url + "/metrics")[1]
    want = {r: roles.count(r) for r in set(roles)}
    if not d.wait_until(lambda: all(d.metric(fmetrics(), "dyn_frontend_workers", model=NAME,
                                             role=r) == n for r, n in want.items()), 60):
        raise RuntimeError(f"{label}: workers did not all register: {fe.stderr()}")
    run = replay(fe.url, trace_file, label, 300)
    agg, recs = run["aggregate"], run["records"]
    ok = [r for r in recs if r["status"] == 200 and not r["error"]]
    longp = [r["ttft_ms"] for r in ok if r["input_tokens"] >= long_isl]
    shortp = [r["ttft_ms"] for r in ok if r["input_tokens"] < long_isl]
    # ITL of the long outputs, less each stream's first gap (0 when the
    # first two tokens arrive in one read).
    itl = [g for r in ok if r["input_tokens"] < long_isl for g in r["itl_ms"][1:]]
    t = fmetrics()
    res = {
        "label": label,
        "ttft_long_p50": d.pct(longp, 50), "ttft_long_p99": d.pct(longp, 99),
        "ttft_short_p50": d.pct(shortp, 50), "ttft_short_p99": d.pct(shortp, 99),
        "itl_p50": d.pct(itl, 50), "itl_p99": d.pct(itl, 99), "itl_p999": d.pct(itl, 99.9),
        "itl_mean": sum(itl) / len(itl) if itl else float("nan"),
        "ttft_p50": agg["ttft_ms"]["p50"], "ttft_p99": agg["ttft_ms"]["p99"],
        "req_s": agg["request_throughput"], "tok_s": agg["output_token_throughput"],
        "errors": agg["errors"],
        "remote": d.metric(t, "dyn_frontend_disagg_decisions_total", decision="remote") or 0,
        "fallbacks": sum(d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1],
                                  "dyn_worker_kv_fallbacks_total") or 0
                         for w in workers if w.role == "decode"),
    }
    for pr in reversed(d.procs):
        pr.stop()
    return res


ROWS = [("TTFT long prompts p50", "ttft_long_p50", "ms"),
        ("TTFT long prompts p99", "ttft_long_p99", "ms"),
        ("TTFT short prompts p50", "ttft_short_p50", "ms"),
        ("TTFT short prompts p99", "ttft_short_p99", "ms"),
        ("TTFT all p50", "ttft_p50", "ms"),
        ("TTFT all p99", "ttft_p99", "ms"),
        ("ITL long outputs p50", "itl_p50", "ms"),
        ("ITL long outputs p99", "itl_p99", "ms"),
        ("ITL long outputs p99.9", "itl_p999", "ms"),
        ("ITL long outputs mean", "itl_mean", "ms"),
        ("request throughput", "req_s", "req/s"),
        ("output token throughput", "tok_s", "tok/s")]


def report(tag, dis, agg):
    print(f"{'':26s} {dis['label']:>12s} {agg['label']:>12s}   ratio (disagg / agg)")
    for name, key, unit in ROWS:
        a, b = dis[key], agg[key]
        r = a / b if b else float("nan")
        better = ("disagg better" if (r < 1) == (unit == "ms") else "agg better") \
            if r == r and abs(r - 1) >= 0.05 else "about equal"
        print(f"{name + ' (' + unit + ')':26s} {a:12.2f} {b:12.2f}   {r:6.3f}  {better}")
    print(f"{'errors':26s} {dis['errors']:12d} {agg['errors']:12d}")
    print(f"disagg: {dis['remote']:.0f} prompts prefilled remotely, "
          f"{dis['fallbacks']:.0f} KV fetch fallbacks")
    for name, key, unit in ROWS:
        fig = key.replace("ttft_long", "ttft_long_prompts").replace(
            "ttft_short", "ttft_short_prompts").replace("itl", "itl_long_outputs")
        ratio = "%.3f" % (dis[key] / agg[key]) if agg[key] else "-"
        print(f"FIGURE disagg.{tag}.{fig} {dis[key]:.3f} {unit.replace('/', '_per_')} "
              f"{ratio} {agg['label'].replace(' ', '_')}_same_rate")
    sys.stdout.flush()
    return dis["errors"] + agg["errors"]


def main():
    bad = 0
    if MOCK:
        bad += run_mock()
    if BUILTIN:
        bad += run_builtin()
    return 1 if bad else 0


def run_mock():
    tr = os.path.join(d.tmp, "mock.jsonl")
    trace(tr, REQUESTS, RATE, LONG_ISL, LONG_PROMPT_OSL, SHORT_ISL, LONG_OSL, 1)
    print(f"disagg: mock workers ({NAME}, speedup-ratio {SPEEDUP:g}, KV transfer "
          f"{25 * SPEEDUP:g} GB/s = 25 x {SPEEDUP:g}), {REQUESTS} requests, Poisson "
          f"{RATE:g} req/s; half {LONG_ISL}-token prompts / {LONG_PROMPT_OSL} tokens out, "
          f"half {SHORT_ISL}-token prompts / {LONG_OSL} tokens out")

    def mock(role):
        a = ["--engine", "mock", "--speedup-ratio", str(SPEEDUP)]
        return a + (["--kv-transfer-bandwidth", str(25 * SPEEDUP)] if role == "decode" else [])
    t0 = time.time()
    dis = run("2P+2D", ["prefill"] * 2 + ["decode"] * 2, mock, tr, LONG_ISL, 512)
    agg = run("4 agg", ["agg"] * 4, mock, tr, LONG_ISL, 512)
    bad = report("mock", dis, agg)
    print(f"(mock: {time.time() - t0:.0f} s)\n")
    return bad


def run_builtin():
    tr = os.path.join(d.tmp, "builtin.jsonl")
    trace(tr, B_REQUESTS, B_RATE, B_LONG_ISL, 4, B_SHORT_ISL, B_LONG_OSL, 2)
    print(f"disagg: builtin engine, dummy weights of {NAME} (1 thread per worker, KV over "
          f"TCP), {B_REQUESTS} requests, Poisson {B_RATE:g} req/s; half {B_LONG_ISL}-token "
          f"prompts / 4 tokens out, half {B_SHORT_ISL}-token prompts / {B_LONG_OSL} out")

    def builtin(role):
        return ["--engine", "builtin", "--load-format", "dummy", "--threads", "1",
                "--max-num-seqs", "8", "--kv-cache-tokens", "8192"]
    t0 = time.time()
    dis = run("1P+1D", ["prefill", "decode"], builtin, tr, B_LONG_ISL, B_LOCAL_MAX)
    agg = run("2 agg", ["agg"] * 2, builtin, tr, B_LONG_ISL, B_LOCAL_MAX)
    bad = report("builtin", dis, agg)
    print(f"(builtin: {time.time() - t0:.0f} s)")
    return bad


if __name__ == "__main__":
    d.run_bench(main)
