#!/usr/bin/env python3
"""grammar_decode - decode speed with and without a JSON schema, through
the real serving path ('make bench', via grammar_decode.sh).

One builtin worker and one frontend; requests through the OpenAI SDK,
streamed, one at a time, alternating plain and constrained
(response_format json_schema: an object with one free string, so a
random model writes long outputs).  A request's decode time is that from
its first content chunk to its WINDOW-th after it (default 64; all of
them when fewer, at least 8), one chunk per token, and its rate the
chunks over that time.  Reported: the median rate of each mode over
REQUESTS requests of each (default 20, after WARMUP of each, default 2:
the grammar's mask cache is warm, as for a schema in steady use), and
the median over the pairs (a plain request and the constrained one just
after it) of their ratio: the machine is shared, and a pair sees the
same load.  The model is Qwen3's tokenizer
(151,936 ids) on a 2-layer, 64-wide dummy-weight model (qwen3-tiny): the
forward pass is small, so the mask's share of a token is as large as it
gets.  Figure: the constrained rate and its ratio to the plain rate
(target: at least 0.95).
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


def one(client, model, seed, constrained):
    """(chunks after the first, seconds from the first to the last of them),
    over at most WINDOW of them."""
    kw = {}
    if constrained:
        kw["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "s", "schema": SCHEMA, "strict": True}}
    times = []
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell a story."}], seed=seed,
        temperature=1.0, max_tokens=MAX_TOKENS, stream=True, **kw)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    times = times[:WINDOW + 1]
    if len(times) < 9:
        return 0, 0.0
    return len(times) - 1, times[-1] - times[0]


def main():
    import openai
    models = {"qwen3-tiny": structured.tiny_copy("qwen3-0.6b-shape", "q")}
    for name, path in models.items():
        structured.worker(path, name)
    fe = d.frontend()
    client = openai.OpenAI(base_url=fe.url + "/v1", api_key="none", max_retries=0, timeout=300)
    d.wait_until(lambda: set(models) <= {m.id for m in client.models.list().data}, timeout=60)
    print(f"{'model':<12} {'plain tok/s':>11} {'json tok/s':>10} {'ratio':>6} {'pairs':>6}")
    figures = []
    for name in models:
        rates = {False: [], True: []}
        ratios = []
        for i in range(WARMUP + REQUESTS):
            pair = {}
            for constrained in (False, True):
                n, dt = one(client, name, 1000 + i, constrained)
                pair[constrained] = n / dt if dt > 0 else 0.0
            if i >= WARMUP and pair[False] and pair[True]:
                for c in pair:
                    rates[c].append(pair[c])
                ratios.append(pair[True] / pair[False])
        plain, json_ = statistics.median(rates[False]), statistics.median(rates[True])
        ratio = statistics.median(ratios)
        print(f"{name:<12} {plain:>11.1f} {json_:>10.1f} {ratio:>6.3f} {len(ratios):>6}",
              flush=True)
        figures.append(f"FIGURE grammar_decode_{name}_json {json_:.1f} tok/s {ratio:.3f} "
                       f"{name}_plain")
    print("(median decode tokens/s of each mode; ratio: median over the pairs of json / plain; "
          "target >= 0.95)")
    for f in figures:
        print(f)
    return 0


if __name__ == "__main__":
    d.run_bench(main)
