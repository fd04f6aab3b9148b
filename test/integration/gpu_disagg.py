#!/usr/bin/env python3
"""gpu_disagg - a prefill worker and a decode worker on the same GPU
(skips, saying why, where no GPU is usable): behind a KV-routing
frontend, greedy answers equal an aggregated GPU worker's (same tokens,
logprobs within TOL), and the decode worker fetched the prompts' KV
blocks (dyn_worker_kv_transfers_total in/ok grows) rather than prefilling them itself.
Each worker takes a third of the GPU's memory.

Expected to FAIL the fetch check until the KV transfer layer moves device
pools (core/serve/kv_fetch.c and kv_lend.c take host segments only; the
CUDA backend has kv_block_read/write but no host segments), so the decode
worker falls back to prefilling locally: its answers still equal.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import dynproc as d  # noqa: E402
import gpu  # noqa: E402

TOL = 2e-3
PROMPTS = ["Once upon a time, there was a little girl named Lily. She loved to play " * 2,
           "The big red dog ran to the park with his friend the cat, and they " * 2]


def worker(name, role):
    return d.Proc(["serve", "--model", d.MODEL, "--served-model-name", name, "--role", role,
                   "--engine", "builtin", "--system-port", "0", "--device", "cuda",
                   "--gpu-memory-utilization", "0.3", "--kv-cache-dtype", "f32",
                   "--kv-cache-tokens", "16384"],
                  r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=120)


def complete(fe, model, prompt):
    status, a = d.post_json(fe.url + "/v1/completions",
                            {"model": model, "prompt": prompt, "max_tokens": 32,
                             "temperature": 0, "logprobs": 1})
    if status != 200:
        return f"HTTP {status}: {str(a)[:300]}"
    lp = a["choices"][0]["logprobs"]
    return lp["tokens"], lp["token_logprobs"]


def main():
    gpu.skip_without_gpu()
    agg = worker("st-agg", "agg")
    pre, dec = worker("st-dis", "prefill"), worker("st-dis", "decode")
    fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0",
                     "--prefill-timeout", "20000"])
    ok = d.wait_until(lambda: not isinstance(complete(fe, "st-dis", "x"), str) and
                      not isinstance(complete(fe, "st-agg", "x"), str), timeout=60)
    if not d.check("the workers answer", ok, pre.stderr() + dec.stderr() + fe.stderr()):
        d.finish()
    dec.sys_port = int(dec.m.group(2))
    n0 = d.sys_metric(dec, "dyn_worker_kv_transfers_total", direction="in", result="ok") or 0
    for i, p in enumerate(PROMPTS):
        a, b = complete(fe, "st-agg", p), complete(fe, "st-dis", p)
        d.check(f"prompt {i}: disaggregated equals aggregated",
                not isinstance(a, str) and not isinstance(b, str) and a[0] == b[0] and
                max(abs(x - y) for x, y in zip(a[1], b[1])) <= TOL, f"{a} vs {b}")
    n1 = d.sys_metric(dec, "dyn_worker_kv_transfers_total", direction="in", result="ok") or 0
    d.check("the decode worker fetched the prompts' blocks", n1 >= n0 + len(PROMPTS),
            f"dyn_worker_kv_transfers_total{{direction=in,result=ok}}: {n0} -> {n1}")


if __name__ == "__main__":
    main()
    d.finish()
