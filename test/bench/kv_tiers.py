#!/usr/bin/env python3
"""kv_tiers.py - TTFT with KV cache tiers against without ('make bench', via
kv_tiers.sh; dyn-serve(1) KV CACHE TIERS).

A multi-turn chat workload on the builtin engine with Qwen3-0.6B's shape
(dummy weights, 1 thread a worker, F16 K/V): CONVS conversations a worker
(default 5) of TURNS turns (default 2).  A conversation's first prompt is HISTORY
(default 384) tokens (system prompt and earlier turns); each next turn's
prompt is the previous one, its OSL (4) output tokens' worth and USER_TOKENS
(default 12) new tokens: the history is long, each turn adds a block, as
in chat.  (The defaults keep the run to minutes on two cores; the
cold first turns cost most of it.)  Each worker's KV pool (G1) holds POOL tokens: one conversation
at its longest, so the working set of a worker's conversations is about
CONVS times its pool and every prefix has left G1 when its conversation
comes back.

Configurations, each on fresh workers: tiers off; G2 only (host memory
for every conversation); G2 + G3 (host memory for one conversation, the
rest spills to a local directory); G2 + G3 + G4 (host memory and local
directory one conversation each, the rest in a directory the workers
share).  One worker, one client playing the conversations round robin,
one request at a time; then two workers behind a frontend with
--router-mode kv and two such clients (CONVS conversations each).

Reported per configuration: TTFT p50 and p90 of the returning turns (the
turns after the first, whose prefix comes back from a tier or is
recomputed), of the first turns (cold everywhere: a control, which also
shows how loaded the machine was), requests a second over the whole run,
blocks onboarded; the ratio of each returning-turn p50 to tiers off, and
to its own first turns' p50 (less moved by a load that changes between
configurations).  Then, from the workers' debug log (DYN_LOG=engine=debug,
dyn-serve(1)), where the onboarded requests' TTFT went, medians in ms:
queued, reading the blocks from the tiers, waiting to be copied in,
computing the rest of the prompt.  FIGURE lines: the p50 of G2, G2+G3 and
G2+G3+G4 against tiers off, for one worker and for two.
"""
import json
import os
import random
import re
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402

MODEL = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
env = os.environ.get
CONVS = int(env("CONVS", "5"))
TURNS = int(env("TURNS", "2"))
HISTORY = int(env("HISTORY", "384"))
USER = int(env("USER_TOKENS", "12"))
OSL = 4
BS = 16
LAST = HISTORY + (TURNS - 1) * (OSL + USER)		# the longest prompt
POOL = -(-(LAST + OSL) // BS) * BS + BS			# one conversation
layers, kv_heads, head_dim, VOCAB = d.model_kv_shape(MODEL)
BLOCK_BYTES = layers * 2 * kv_heads * head_dim * 2 * BS	# F16 K and V
CONV_GB = (POOL // BS) * BLOCK_BYTES / (1 << 30)


def ttft(url, ids):
    body = json.dumps({"model": "m", "prompt": ids, "max_tokens": OSL, "temperature": 0,
                       "stream": True, "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
    t0 = time.monotonic()
    first = None
    with urllib.request.urlopen(req, timeout=600) as r:
        for ev in d.sse_events(r):
            if ev is None:
                break
            if first is None and ev.get("choices"):
                first = time.monotonic() - t0
    return first


def tier_flags(cfg, k):
    """The flags of configuration cfg for worker k (G3 its own, G4 shared)."""
    g3 = ["--kv-disk-cache-dir", os.path.join(d.tmp, f"{cfg}-g3-{k}")]
    g4 = ["--kv-shared-cache-dir", os.path.join(d.tmp, f"{cfg}-g4")]
    host = lambda convs: ["--kv-host-cache-gb", f"{convs * CONV_GB:.6f}"]  # noqa: E731
    return {"off": [],
            "G2": host(2 * CONVS),
            "G2+G3": host(1) + g3 + ["--kv-disk-cache-gb", f"{2 * CONVS * CONV_GB:.6f}"],
            "G2+G3+G4": host(1) + g3 + ["--kv-disk-cache-gb", f"{CONV_GB:.6f}"] + g4}[cfg]


def play(cfg, n_workers):
    tag = f"{cfg.replace('+', '')}w{n_workers}"
    ws = []
    for k in range(n_workers):
        w = d.Proc(["serve", "--model", MODEL, "--served-model-name", "m", "--engine",
                    "builtin", "--load-format", "dummy", "--threads", "1", "--kv-cache-tokens",
                    str(POOL), "--system-port", "0", "--namespace", tag] + tier_flags(cfg, k),
                   r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=120,
                   env={"DYN_LOG": "warn,engine=debug"})
        w.sys_port = int(w.m.group(2))
        ws.append(w)
    f = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1", "--namespace", tag] +
               (["--router-mode", "kv"] if n_workers > 1 else []),
               r"listening on http://[^:]+:(\d+)", timeout=60)
    url = f"http://127.0.0.1:{int(f.m.group(1))}"
    d.wait_until(lambda: d.metric(d.http_get(url + "/metrics")[1], "dyn_frontend_workers",
                                  model="m") == n_workers, timeout=60)
    rng = random.Random(5)	# the same prompts in every configuration
    vocab = min(VOCAB, 150000)  # ids the tokenizer knows
    n = CONVS * n_workers
    convs = [[rng.randrange(100, vocab - 100) for _ in range(HISTORY)] for _ in range(n)]
    news = [[[rng.randrange(100, vocab - 100) for _ in range(OSL + USER)]
             for _ in range(TURNS)] for _ in range(n)]
    first, later = [], []

    def client(mine):
        for turn in range(TURNS):
            for c in mine:
                t = ttft(url, convs[c])
                (first if turn == 0 else later).append(t)
                # the output is not known as ids here: the next turn adds
                # fresh tokens in its place (the prefix is what matters)
                convs[c] = convs[c] + news[c][turn]

    t0 = time.monotonic()
    th = [threading.Thread(target=client, args=(list(range(k, n, n_workers)),))
          for k in range(n_workers)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.monotonic() - t0
    onb = sum(d.sys_metric(w, "dyn_worker_kv_tier_onboards_total") or 0 for w in ws)
    f.stop()
    for w in ws:
        w.stop()
    return {"first": first, "later": later, "rps": n * TURNS / wall, "onb": int(onb),
            "wall": wall, "split": ttft_split(ws)}


SPLIT = re.compile(r"first token after ([\d.]+) ms: queued ([\d.]+), (\d+) blocks read from "
                   r"the tiers ([\d.]+), filled in ([\d.]+) later, then ([\d.]+) computing")


def ttft_split(ws):
    """The onboarded requests' TTFT parts from the workers' debug logs."""
    rows = []
    for w in ws:
        w.log.flush()
        w.log.seek(0)
        rows += [[float(x) for x in m.groups()] for m in SPLIT.finditer(w.log.read())]
    return rows


def report(n_workers, res):
    off = d.pct(res["off"]["later"], 50) if "off" in res else float("nan")
    print(f"\n{n_workers} worker(s), {n_workers} client(s)"
          + (", --router-mode kv" if n_workers > 1 else ""))
    print(f"{'':10}{'TTFT p50':>10}{'p90':>8}{'vs off':>8}{'turn1 p50':>11}"
          f"{'p50/turn1':>11}{'req/s':>8}{'onboarded':>11}{'wall s':>8}")
    for cfg, r in res.items():
        p50, t1 = d.pct(r["later"], 50), d.pct(r["first"], 50)
        print(f"{cfg:10}{p50:10.3f}{d.pct(r['later'], 90):8.3f}"
              f"{p50 / off:8.3f}{t1:11.3f}{p50 / t1:11.3f}"
              f"{r['rps']:8.3f}{r['onb']:11d}{r['wall']:8.1f}")
    print(f"onboarded requests' TTFT (medians, ms):\n{'':10}{'n':>4}{'TTFT':>8}{'queued':>8}"
          f"{'blocks':>8}{'read':>8}{'fill':>8}{'compute':>9}")
    for cfg, r in res.items():
        rows = r["split"]
        if rows:
            med = [d.pct([x[i] for x in rows], 50) for i in range(6)]
            print(f"{cfg:10}{len(rows):4d}{med[0]:8.0f}{med[1]:8.0f}{med[2]:8.0f}"
                  f"{med[3]:8.1f}{med[4]:8.1f}{med[5]:9.0f}")
    for cfg, r in res.items():
        if cfg != "off":
            p50 = d.pct(r["later"], 50)
            name = cfg.replace("+", "_")
            vs = f"{p50 / off:.3f} tiers_off_{n_workers}w" if off == off else "- -"
            print(f"FIGURE kv_tiers_ttft_p50_returning_{name}_{n_workers}w {p50:.4f} s {vs}")


def main():
    print(f"kv_tiers: qwen3-0.6b shape (dummy weights, 1 thread a worker, F16 K/V, "
          f"{BLOCK_BYTES // 1024} KiB a {BS}-token block); {CONVS} conversations a worker x "
          f"{TURNS} turns; prompts {HISTORY}..{LAST} tokens (history {HISTORY}, "
          f"+{OSL + USER} a turn: {OSL} output, {USER} user), {OSL} output tokens; G1 pool "
          f"{POOL} tokens a worker (one conversation): working set {CONVS * LAST / POOL:.1f}x "
          f"the pool; G2 {2 * CONVS} conversations (G2 only) or 1, G3 {2 * CONVS} (G2+G3) "
          f"or 1, G4 the rest (shared); TTFT in seconds, of the "
          f"returning turns unless said", flush=True)
    cfgs = [c for c in env("CONFIGS", "off,G2,G2+G3,G2+G3+G4").split(",")]
    t0 = time.monotonic()
    for n_workers in [int(x) for x in env("WORKERS", "1,2").split(",")]:
        res = {cfg: play(cfg, n_workers) for cfg in cfgs}
        report(n_workers, res)
    print(f"\nkv_tiers: {time.monotonic() - t0:.0f} s in all")
    d.finish()


if __name__ == "__main__":
    sys.exit(main())
