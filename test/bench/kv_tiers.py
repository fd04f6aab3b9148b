#!/usr/bin/env python3
"""kv_tiers.py - TTFT with KV cache tiers against without ('make bench', via
kv_tiers.sh; dyn-serve(1) KV CACHE TIERS).

A multi-turn workload: CONVS conversations (default 4) of TURNS turns
(default 3), played round robin, one request at a time; each turn's
prompt is the previous turn's prompt, its output and USER (32) new
tokens, the first SYSTEM (160) tokens long; outputs of 4 tokens.  One
worker (builtin engine, dummy weights of smollm2-135m-shape, 1 thread,
F16 K/V; qwen3-0.6b-shape's tokenizer files beside it, for the frontend)
whose KV pool holds POOL (256) tokens: one conversation, so
every conversation's prefix has left G1 when its next turn comes.  Run
twice through one frontend each, in the same run: tiers off, and G2
(host memory, 1 GB) + G3 (a local directory).  Reported: TTFT p50 and
mean of the turns after the first (the ones whose prefix comes back),
and the ratio tiers / off (below 1 is better); the first turns (cold
for both) as a control.

Then the same workload on Qwen3-0.6B's shape (QWEN_CONVS conversations,
default 4) over two such workers behind a frontend with --router-mode kv,
whose KV events name the tier of each block: with tiers, a returning
conversation should go back to the worker whose G2/G3 holds its prefix.
Reported likewise, with the blocks onboarded on both workers.
"""
import json
import os
import random
import shutil
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402

MODELS = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models"))
MODEL = os.path.join(d.tmp, "smollm2-135m-shape")
env = os.environ.get
CONVS = int(env("CONVS", "4"))
TURNS = int(env("TURNS", "3"))
SYSTEM = int(env("SYSTEM", "160"))
USER = int(env("USER_TOKENS", "32"))
POOL = int(env("POOL", "256"))
OSL = 4


def ttft(url, ids):
    body = json.dumps({"model": "m", "prompt": ids, "max_tokens": OSL, "temperature": 0,
                       "stream": True, "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
    t0 = time.monotonic()
    first, text = None, ""
    with urllib.request.urlopen(req, timeout=300) as r:
        for ev in d.sse_events(r):
            if ev is None:
                break
            if first is None and ev.get("choices"):
                first = time.monotonic() - t0
            for c in ev.get("choices", []):
                text += c.get("text", "")
    return first, text


def play(extra, tag, model=MODEL, n_workers=1, convs_n=CONVS):
    ws = []
    for k in range(n_workers):
        dirs = [x.replace("@", str(k)) for x in extra]  # a G3 directory each
        w = d.Proc(["serve", "--model", model, "--served-model-name", "m", "--engine",
                    "builtin", "--load-format", "dummy", "--threads", "1", "--kv-cache-tokens",
                    str(POOL), "--system-port", "0", "--namespace", tag] + dirs,
                   r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=120)
        w.sys_port = int(w.m.group(2))
        ws.append(w)
    f = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1", "--namespace", tag] +
               (["--router-mode", "kv"] if n_workers > 1 else []),
               r"listening on http://[^:]+:(\d+)", timeout=60)
    url = f"http://127.0.0.1:{int(f.m.group(1))}"
    d.wait_until(lambda: d.metric(d.http_get(url + "/metrics")[1], "dyn_frontend_workers",
                                  model="m") == n_workers, timeout=60)
    rng = random.Random(5)
    vocab = min(d.model_kv_shape(model)[3], 150000)  # ids the tokenizer knows
    convs = [[rng.randrange(100, vocab - 100) for _ in range(SYSTEM)] for _ in range(convs_n)]
    first, later = [], []
    for turn in range(TURNS):
        for c in range(convs_n):
            t, _ = ttft(url, convs[c])
            (first if turn == 0 else later).append(t)
            # the output is not known as ids here: the next turn adds
            # fresh tokens in its place (the prefix is what matters)
            convs[c] = convs[c] + [rng.randrange(100, vocab - 100) for _ in range(OSL + USER)]
    onb = sum(d.sys_metric(w, "dyn_worker_kv_tier_onboards_total") or 0 for w in ws)
    f.stop()
    for w in ws:
        w.stop()
    return first, later, onb


def report(title, off, on, onb, label):
    (off_first, off_later), (on_first, on_later) = off, on
    p50 = lambda xs: d.pct(xs, 50)  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{title}; {int(onb)} blocks onboarded with tiers")
    print(f"{'':24}{'tiers off':>12}{'G2+G3':>12}{'ratio':>8}")
    rows = [("TTFT p50, turns 2+ (s)", p50(off_later), p50(on_later)),
            ("TTFT mean, turns 2+ (s)", mean(off_later), mean(on_later)),
            ("TTFT p50, turn 1 (s)", p50(off_first), p50(on_first))]
    for name, a, b in rows:
        print(f"{name:24}{a:12.3f}{b:12.3f}{b / a:8.2f}")
    print(f"FIGURE {label} {p50(on_later):.4f} s "
          f"{p50(on_later) / p50(off_later):.3f} tiers_off")


def main():
    os.makedirs(MODEL)
    shutil.copy(os.path.join(MODELS, "smollm2-135m-shape", "config.json"), MODEL)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(MODELS, "qwen3-0.6b-shape", f), MODEL)
    tiers = ["--kv-host-cache-gb", "1", "--kv-disk-cache-dir", os.path.join(d.tmp, "g3-@")]
    shape = (f"{TURNS} turns, prompts {SYSTEM}...{SYSTEM + (TURNS - 1) * (OSL + USER)} "
             f"tokens, G1 pool {POOL} tokens")
    off = play([], "tiersoff")
    on = play(tiers, "tierson")
    report(f"kv_tiers: smollm2-135m shape, one worker, {CONVS} conversations x {shape}",
           off[:2], on[:2], on[2], "kv_tiers_ttft_p50_returning")
    qwen = os.path.join(MODELS, "qwen3-0.6b-shape")
    qn = int(env("QWEN_CONVS", "4"))
    off = play([], "qwenoff", qwen, 2, qn)
    on = play(tiers, "qwenon", qwen, 2, qn)
    report(f"kv_tiers: qwen3-0.6b shape, two workers, --router-mode kv, {qn} conversations x "
           f"{shape}", off[:2], on[:2], on[2], "kv_tiers_ttft_p50_returning_qwen3_2w_kv")
    d.finish()


if __name__ == "__main__":
    sys.exit(main())
