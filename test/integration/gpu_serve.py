#!/usr/bin/env python3
"""gpu_serve - a worker on the GPU behind a frontend (skips, saying why,
where no GPU is usable).

  - batching: 8 different prompts sent at once answer (greedy tokens and
    logprobs within TOL) as each sent alone; the same prompts again
    (prefix-cache hits: the worker's hit-token counter grows) answer the
    same again
  - the same answers as a CPU worker of the same model (stories260K, F32
    K/V), the independent reference
  - no device memory leak: the worker's GPU memory (nvidia-smi) after
    1,000 more requests is what it was after the first ones
"""
import concurrent.futures
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import dynproc as d  # noqa: E402
import gpu  # noqa: E402

TOL = 2e-3
# long enough for whole KV blocks (16 tokens) to be cached and hit
PROMPTS = [f"Once upon a time, {w} went to the park to play with a ball. " * 4 for w in
           ("Lily", "Tom", "a cat", "the dog", "Ben", "Sue", "a bird", "the king")]


def worker(name, device):
    return d.Proc(["serve", "--model", d.MODEL, "--served-model-name", name, "--engine", "builtin",
                   "--system-port", "0", "--device", device, "--kv-cache-dtype", "f32",
                   "--kv-cache-tokens", "16384", "--max-num-seqs", "16"],
                  r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=120)


def complete(fe, model, prompt, max_tokens=24):
    status, a = d.post_json(fe.url + "/v1/completions",
                            {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                             "temperature": 0, "logprobs": 1})
    if status != 200:
        return f"HTTP {status}: {str(a)[:300]}"
    lp = a["choices"][0]["logprobs"]
    return lp["tokens"], lp["token_logprobs"]


def same(a, b):
    return (not isinstance(a, str) and not isinstance(b, str) and a[0] == b[0] and
            max(abs(x - y) for x, y in zip(a[1], b[1])) <= TOL)


def main():
    gpu.skip_without_gpu()
    g = worker("stories-gpu", "cuda")
    c = worker("stories-cpu", "cpu")
    fe = d.frontend()
    ok = d.wait_until(lambda: all(complete(fe, m, "x", 1) != "" and
                                  not isinstance(complete(fe, m, "x", 1), str)
                                  for m in ("stories-gpu", "stories-cpu")), timeout=60)
    if not d.check("both workers answer", ok, g.stderr() + c.stderr()):
        d.finish()
    alone = [complete(fe, "stories-gpu", p) for p in PROMPTS]
    cpu = [complete(fe, "stories-cpu", p) for p in PROMPTS]
    d.check("the GPU answers as the CPU backend", all(same(a, b) for a, b in zip(alone, cpu)),
            f"{alone[0]} vs {cpu[0]}")
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        batch = list(ex.map(lambda p: complete(fe, "stories-gpu", p), PROMPTS))
    d.check("8 at once answer as each alone", all(same(a, b) for a, b in zip(batch, alone)),
            f"{batch[0]} vs {alone[0]}")
    t = d.http_get(f"http://127.0.0.1:{g.m.group(2)}/metrics")[1]
    hits0 = d.metric(t, "dyn_worker_prefix_cache_hit_tokens_total") or 0
    again = [complete(fe, "stories-gpu", p) for p in PROMPTS]
    t = d.http_get(f"http://127.0.0.1:{g.m.group(2)}/metrics")[1]
    hits1 = d.metric(t, "dyn_worker_prefix_cache_hit_tokens_total") or 0
    d.check("prefix-cache hits answer as before", hits1 > hits0 and
            all(same(a, b) for a, b in zip(again, alone)), f"hits {hits0} -> {hits1}")
    before = gpu.gpu_memory_mib(g.p.pid)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        res = list(ex.map(lambda i: complete(fe, "stories-gpu", f"{i} " + PROMPTS[i % 8], 4),
                          range(1000)))
    after = gpu.gpu_memory_mib(g.p.pid)
    d.check("1000 requests answered", all(not isinstance(r, str) for r in res),
            next((r for r in res if isinstance(r, str)), ""))
    print(f"  worker GPU memory: {before} MiB before, {after} MiB after 1000 requests")
    d.check("no device memory leaked after 1000 requests",
            before is not None and after == before, f"{before} -> {after} MiB")


if __name__ == "__main__":
    main()
    d.finish()
