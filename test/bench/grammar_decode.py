#!/usr/bin/env python3
"""grammar_decode - decode speed with and without a JSON schema, through
the real serving path ('make bench', via grammar_decode.sh).

One builtin worker and one frontend; requests through the OpenAI SDK,
streamed, one at a time, in pairs: a constrained one (response_format
json_schema: an object with one free string, so a random model writes
long outputs), then a plain one with the same prompt and as many tokens
(max_tokens: those of the constrained one).  A request's decode time is that from
its first content chunk to its WINDOW-th after it (default 64; all of
them when fewer, at least 8), one chunk per token, and its rate the
chunks over that time.  Reported: the median rate of each mode over
REQUESTS requests of each (default 20, after WARMUP of each, default 2:
the grammar's mask cache is warm, as for a schema in steady use), and
the median over the pairs of their ratio: the machine is shared, and a
pair sees the same load.  Less sensitive to that load: the worker's CPU time (all its
threads, the grammar thread included) per generated token of each mode,
totalled over the same requests, and their ratio.  The model is Qwen3's
tokenizer (151,936 ids) on a 2-layer, 64-wide dummy-weight model
(qwen3-tiny): the forward pass is small, so the mask's share of a token
is as large as it gets.  Figures: the constrained rate and its ratio to
the plain rate (target: at least 0.95); the constrained CPU time per
token and its ratio to the plain one.
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402
import structured  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REQUESTS = int(os.environ.get("REQUESTS", "20"))
WINDOW = int(os.environ.get("WINDOW", "64"))
WARMUP = int(os.environ.get("WARMUP", "2"))
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "128"))
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
          "additionalProperties": False}


def cpu_seconds(pid):
    """User + system CPU time of process pid, all its threads."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one(client, model, seed, constrained, max_tokens):
    """(chunks after the first, seconds from the first to the last of them,
    over at most WINDOW of them; completion tokens)."""
    kw = {}
    if constrained:
        kw["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "s", "schema": SCHEMA, "strict": True}}
    times = []
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell a story."}], seed=seed,
        temperature=1.0, max_tokens=max_tokens, stream=True,
        stream_options={"include_usage": True}, **kw)
    tokens = 0
    for chunk in stream:
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    times = times[:WINDOW + 1]
    if len(times) < 9:
        return 0, 0.0, tokens
    return len(times) - 1, times[-1] - times[0], tokens


def main():
    import openai
    models = {"qwen3-tiny": structured.tiny_copy("qwen3-0.6b-shape", "q")}
    workers = {name: structured.worker(path, name) for name, path in models.items()}
    fe = d.frontend()
    client = openai.OpenAI(base_url=fe.url + "/v1", api_key="none", max_retries=0, timeout=300)
    d.wait_until(lambda: set(models) <= {m.id for m in client.models.list().data}, timeout=60)
    print(f"{'model':<12} {'plain tok/s':>11} {'json tok/s':>10} {'ratio':>6} {'pairs':>6} | "
          f"{'CPU us/tok: plain':>17} {'json':>6} {'ratio':>6}")
    figures = []
    for name in models:
        rates = {False: [], True: []}
        cpu = {False: [0.0, 0], True: [0.0, 0]}
        ratios = []
        pid = workers[name].p.pid
        for i in range(WARMUP + REQUESTS):
            pair = {}
            tokens = MAX_TOKENS
            for constrained in (True, False):
                c0 = cpu_seconds(pid)
                n, dt, tokens = one(client, name, 1000 + i, constrained, tokens or MAX_TOKENS)
                if i >= WARMUP:
                    cpu[constrained][0] += cpu_seconds(pid) - c0
                    cpu[constrained][1] += tokens
                pair[constrained] = n / dt if dt > 0 else 0.0
            if i >= WARMUP and pair[False] and pair[True]:
                for c in pair:
                    rates[c].append(pair[c])
                ratios.append(pair[True] / pair[False])
        plain, json_ = statistics.median(rates[False]), statistics.median(rates[True])
        ratio = statistics.median(ratios)
        us = {c: cpu[c][0] / max(cpu[c][1], 1) * 1e6 for c in cpu}
        print(f"{name:<12} {plain:>11.1f} {json_:>10.1f} {ratio:>6.3f} {len(ratios):>6} | "
              f"{us[False]:>17.0f} {us[True]:>6.0f} {us[True] / us[False]:>6.3f}", flush=True)
        figures.append(f"FIGURE grammar_decode_{name}_json {json_:.1f} tok/s {ratio:.3f} "
                       f"{name}_plain")
        figures.append(f"FIGURE grammar_decode_cpu_{name}_json {us[True]:.0f} us/token "
                       f"{us[True] / us[False]:.3f} {name}_plain")
    print("(median decode tokens/s of each mode; ratio: median over the pairs of json / plain, "
          "target >= 0.95; CPU: the worker's CPU time per generated token, prompt included)")
    for f in figures:
        print(f)
    return 0


if __name__ == "__main__":
    d.run_bench(main)
