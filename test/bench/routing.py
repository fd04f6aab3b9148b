#!/usr/bin/env python3
"""routing.py - routing quality of the KV router ('make bench', via routing.sh).

Replays the Mooncake synthetic trace (../shared/traces) through `dyn frontend`
in front of 8 mock workers (`dyn serve --engine mock`: the real scheduler and
KV block manager, a timing model instead of compute) once per router mode
in MODES (default: kv, kv:2 = kv with --kv-overlap-score-weight 2,
round-robin, random), each with fresh workers (empty caches), and reports
per mode the prefix-cache hit rate in tokens (from the workers' own
counters), TTFT p50/p90/p99, ITL p50 and request throughput (from dyn
bench), against the best hit rate possible for the trace, computed offline.

Scale (stated in the output): lengths scaled by LENGTH_SCALE (default 1/2:
one trace block of 512 tokens becomes 256 tokens, 4 mock KV blocks of the
default size 64), time compressed SPEEDUP times (default 10), mock compute
MOCK_SPEEDUP times faster than the timing model (default 2), so the load
per worker is SPEEDUP / MOCK_SPEEDUP times the trace's at half its
lengths.  Requests whose scaled lengths exceed the model's context are
left out.  REQUESTS (default: all) limits the replay to the trace's first
requests.

Offline best: a request can at best reuse every leading block whose prefix
some earlier request already had, except the block holding its last token,
which is always computed.  With an unbounded cache that is an upper bound;
for the workers' cache size, the best is computed as one pooled cache of
the 8 workers' capacity (8 x 16,384 blocks) evicting the least recently
used block, every request served where its prefix is.  Hit-rate ratios are
against the latter; TTFT ratios against round-robin.
"""
import collections
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402

SHARED = os.path.abspath(os.path.join(d.TOP, "..", "shared"))
TRACE = os.path.join(SHARED, "traces", "mooncake_synthetic_trace.jsonl")
MODEL = os.path.join(SHARED, "models", "qwen3-0.6b-shape")
NAME = "qwen3-0.6b-shape"
WORKERS = int(os.environ.get("WORKERS", "8"))
LENGTH_SCALE = float(os.environ.get("LENGTH_SCALE", "0.5"))
SPEEDUP = float(os.environ.get("SPEEDUP", "10"))
REQUESTS = int(os.environ.get("REQUESTS", "0"))
MODES = os.environ.get("MODES", "kv kv:2 round-robin random").split()
MOCK_SPEEDUP = float(os.environ.get("MOCK_SPEEDUP", "2"))
CONTEXT = 40960     # qwen3-0.6b-shape's max_position_embeddings
BLOCK = 64          # the mock engine's default KV block size
KV_BLOCKS = 16384   # and its default number of blocks
TRACE_BLOCK = 512   # tokens per hash id in the trace


def load_trace():
    """The trace's requests (the first REQUESTS), less those whose scaled
    prompt and output do not fit the model's context."""
    with open(TRACE) as f:
        reqs = [json.loads(x) for x in f if x.strip()]
    reqs = reqs[:REQUESTS] if REQUESTS > 0 else reqs
    return [r for r in reqs
            if int(r["input_length"] * LENGTH_SCALE) + int(r["output_length"] * LENGTH_SCALE) + 1
            <= CONTEXT]


def offline_best(reqs, capacity=None):
    """Hit tokens / prompt tokens if every request went where its longest
    cached prefix is, with one pooled cache: unbounded (capacity None), or
    of capacity KV blocks evicting the least recently used."""
    block = int(round(TRACE_BLOCK * LENGTH_SCALE))
    assert block % BLOCK == 0, "a scaled trace block must be whole KV blocks"
    per = block // BLOCK
    cache = collections.OrderedDict()
    hit = total = 0
    for r in reqs:
        n_tok = int(r["input_length"] * LENGTH_SCALE)
        # KV blocks of the prompt, named by their prefix; the block holding
        # the last token is always computed.
        n_blk = max(0, (n_tok - 1) // BLOCK)
        keys, parent = [], 0
        for i, h in enumerate(r["hash_ids"]):
            for j in range(per):
                if len(keys) == n_blk:
                    break
                parent = hash((parent, h, j))
                keys.append(parent)
        k = 0
        while k < len(keys) and keys[k] in cache:
            k += 1
        hit += k * BLOCK
        total += n_tok
        for key in keys:
            cache[key] = True
            cache.move_to_end(key)
        while capacity is not None and len(cache) > capacity:
            cache.popitem(last=False)
    return hit / total if total else 0.0


def run_mode(spec, trace_file, n_req):
    """spec: a router mode, or kv:W for kv with --kv-overlap-score-weight W."""
    mode, _, weight = spec.partition(":")
    d.procs.clear()
    store_dir = os.path.join(d.tmp, "store-" + spec)
    d.store = "file://" + store_dir
    workers = []
    for _ in range(WORKERS):
        w = d.Proc(["serve", "--model", MODEL, "--engine", "mock", "--system-port", "0",
                    "--speedup-ratio", str(MOCK_SPEEDUP)],
                   r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
        w.sys_port = int(w.m.group(2))
        workers.append(w)
    fe = d.frontend(["--router-mode", mode] +
                    (["--kv-overlap-score-weight", weight] if weight else []))
    ready = d.wait_until(lambda: d.metric(d.http_get(fe.url + "/metrics")[1],
                                          "dyn_frontend_workers", model=NAME) == WORKERS,
                         timeout=60)
    if not ready:
        raise RuntimeError("workers did not all register: " + fe.stderr())
    out = os.path.join(d.tmp, "bench-%s.json" % spec)
    t0 = time.time()
    p = subprocess.run([d.DYN, "bench", "--url", fe.url, "--model", NAME, "--no-progress",
                        "--endpoint", "completions", "--tokenizer", MODEL,
                        "--trace", trace_file, "--fixed-schedule", "--speedup", str(SPEEDUP),
                        "--length-scale", str(LENGTH_SCALE), "--num-requests", str(n_req),
                        "--json", out], capture_output=True, text=True, timeout=3600)
    wall = time.time() - t0
    if p.returncode != 0:
        raise RuntimeError("dyn bench (%s) exited %d: %s" % (spec, p.returncode,
                                                             p.stderr[-600:]))
    agg = json.load(open(out))["runs"][0]["aggregate"]
    hit = prompt = 0.0
    spread = []
    for w in workers:
        text = d.http_get("http://127.0.0.1:%d/metrics" % w.sys_port)[1]
        h = d.metric(text, "dyn_worker_prefix_cache_hit_tokens_total") or 0
        t = d.metric(text, "dyn_worker_prompt_tokens_total") or 0
        hit += h
        prompt += t
        spread.append(int(d.metric(text, "dyn_worker_requests_total") or 0))
    for pr in reversed(d.procs):
        pr.stop()
    return {"mode": spec, "hit": hit / prompt if prompt else 0.0, "agg": agg, "wall": wall,
            "spread": spread}


def main():
    reqs = load_trace()
    trace_file = os.path.join(d.tmp, "trace.jsonl")
    with open(trace_file, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")
    unbounded = offline_best(reqs)
    best = offline_best(reqs, WORKERS * KV_BLOCKS)
    span = reqs[-1]["timestamp"] / 1000.0
    print("routing: %d requests of the Mooncake synthetic trace (%.0f s), lengths x %g "
          "(trace block %d -> %d tokens), time / %g (%.0f s), %d mock workers "
          "(qwen3-0.6b-shape, block %d, default timing model, speedup-ratio %g)"
          % (len(reqs), span, LENGTH_SCALE, TRACE_BLOCK, int(TRACE_BLOCK * LENGTH_SCALE),
             SPEEDUP, span / SPEEDUP, WORKERS, BLOCK, MOCK_SPEEDUP))
    print("offline best prefix-cache hit rate (tokens): %.1f%% for %d x %d blocks of %d "
          "(pooled, LRU); %.1f%% unbounded" % (100 * best, WORKERS, KV_BLOCKS, BLOCK,
                                              100 * unbounded))
    res = {}
    for mode in MODES:
        res[mode] = run_mode(mode, trace_file, len(reqs))
        r = res[mode]
        a = r["agg"]
        print("%-12s hit %5.1f%% (%.0f%% of best)  TTFT p50 %7.1f p90 %7.1f p99 %7.1f ms  "
              "ITL p50 %5.2f ms  %5.2f req/s  errors %d  per worker %s"
              % (mode, 100 * r["hit"], 100 * r["hit"] / best if best else 0,
                 a["ttft_ms"]["p50"], a["ttft_ms"]["p90"], a["ttft_ms"]["p99"],
                 a["itl_ms"]["p50"], a["request_throughput"], a["errors"], r["spread"]))
        sys.stdout.flush()
    rr = res.get("round-robin")
    for mode, r in res.items():
        a = r["agg"]
        key = mode.replace("-", "_").replace(":", "_w")
        print("FIGURE routing.%s.hit_rate %.4f fraction %.3f offline_best_pooled_lru"
              % (key, r["hit"], r["hit"] / best if best else 0))
        ratio = "-"
        base = "-"
        if rr and mode != "round-robin" and a["ttft_ms"]["p50"] > 0:
            ratio = "%.3f" % (rr["agg"]["ttft_ms"]["p50"] / a["ttft_ms"]["p50"])
            base = "round_robin_p50_over_this"
        print("FIGURE routing.%s.ttft_p50 %.2f ms %s %s" % (key, a["ttft_ms"]["p50"], ratio, base))
        print("FIGURE routing.%s.ttft_p99 %.2f ms - -" % (key, a["ttft_ms"]["p99"]))
        print("FIGURE routing.%s.req_throughput %.3f req/s - -" % (key, a["request_throughput"]))
    bad = [m for m, r in res.items() if r["agg"]["errors"]]
    if bad:
        print("routing: requests failed in %s" % ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    d.run_bench(main)
