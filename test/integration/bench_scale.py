#!/usr/bin/env python3
"""bench_scale.py - one dyn bench process holds 1,000 concurrent streams.

A real deployment (dyn frontend + dyn serve --engine echo on stories260K,
tokens 20 ms apart) is driven by one dyn bench process at concurrency
1000 for two waves of requests.  Every request must complete with the
right token counts (the echo engine returns exactly max_tokens tokens of
the prompt), 1,000 streams must really be open at the same moment (from
the records' start and end times), the worker must have served exactly
what dyn bench counted (input tokens: the server's count, as the worker
counted them), and dyn bench must report its own CPU use.
Bounded: about 3 s of load, well under 30 s with start-up.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import dynproc as d  # noqa: E402

CONC = 1000
REQUESTS = 2000
ISL, OSL = 64, 32


def max_overlap(recs):
    ev = []
    for r in recs:
        ev.append((r["start_ms"], 1))
        ev.append((r["start_ms"] + r["e2e_ms"], -1))
    ev.sort()
    cur = best = 0
    for _, v in ev:
        cur += v
        best = max(best, cur)
    return best


def main():
    if not os.path.isdir(d.MODEL):
        d.skip("scale", "model %s not found" % d.MODEL)
        d.finish()
    w = d.worker(delay=20)
    f = d.frontend()
    d.check("frontend lists the worker's model",
            d.wait_until(lambda: os.path.basename(d.MODEL) in d.http_get(f.url + "/v1/models")[1],
                         timeout=20))
    out = os.path.join(d.tmp, "scale.json")
    t0 = time.monotonic()
    # No --model: taken from the frontend's /v1/models.  --tokenizer: the
    # model's own, so prompt token counts are exact.
    p = subprocess.run([d.DYN, "bench", "--url", f.url, "--no-progress", "--endpoint", "completions",
                        "--concurrency", str(CONC), "--num-requests", str(REQUESTS),
                        "--isl", str(ISL), "--osl", str(OSL), "--tokenizer", d.MODEL,
                        "--timeout", "25", "--json", out],
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    d.check("dyn bench exits 0 (%.1f s)" % took, p.returncode == 0, p.stderr[-500:])
    doc = json.load(open(out)) if os.path.exists(out) else {"runs": [{}]}
    run = doc["runs"][0]
    agg = run.get("aggregate", {})
    recs = run.get("records", [])
    d.check("all %d requests complete, no errors (%s ok, %s)" %
            (REQUESTS, agg.get("completed"), agg.get("errors_by_kind")),
            agg.get("completed") == REQUESTS and agg.get("errors") == 0 and len(recs) == REQUESTS)
    peak = max_overlap(recs) if recs else 0
    d.check("%d streams open at once (peak %d)" % (CONC, peak), peak == CONC)
    # Output: max_tokens tokens per the server's usage, the tokens counted
    # and the received text re-tokenized.  The echo engine streams the
    # prompt back from its BOS, which has no text: 31 text events carry
    # the 32 tokens.  Input: the prompt built (exact with the tokenizer)
    # plus the BOS the server adds.
    bad = [r for r in recs
           if r["output_tokens"] != OSL or r["usage_completion_tokens"] != OSL
           or r["tokenizer_output_tokens"] != OSL or r["token_events"] not in (OSL - 1, OSL)
           or r["input_tokens"] != ISL or r["usage_prompt_tokens"] != ISL + 1]
    d.check("every request: %d output tokens (usage, events, re-tokenized), %d input tokens"
            % (OSL, ISL), recs and not bad, json.dumps(bad[:1])[:500])
    mt = d.http_get("http://127.0.0.1:%d/metrics" % w.sys_port)[1]
    fin = d.metric(mt, "dyn_worker_requests_finished_total")
    gen = d.metric(mt, "dyn_worker_generated_tokens_total")
    d.check("the worker finished %d requests and streamed %d tokens (%s, %s)"
            % (REQUESTS, REQUESTS * OSL, fin, gen), fin == REQUESTS and gen == REQUESTS * OSL)
    # Aggregate input tokens are the server's count (the prompt plus BOS),
    # as the worker itself counted them; the built count is the cross-check.
    pin = d.metric(mt, "dyn_worker_prompt_tokens_total")
    d.check("aggregate input tokens = the worker's prompt tokens (%s, %s; mean %s)"
            % (agg.get("total_input_tokens"), pin, agg.get("input_tokens", {}).get("mean")),
            agg.get("total_input_tokens") == pin == REQUESTS * (ISL + 1) and
            agg["input_tokens"]["mean"] == ISL + 1 and agg.get("usage_input_mismatch") == REQUESTS
            and "%d of %d requests" % (REQUESTS, REQUESTS) in p.stdout, p.stdout[-600:])
    cpu = agg.get("cpu_percent")
    d.check("dyn bench reports its own CPU use (%s%% of a core)" % cpu,
            isinstance(cpu, (int, float)) and 0 < cpu < 400 and "Load generator CPU:" in p.stdout,
            p.stdout[-400:])
    d.check("JSON names the discovered model", doc.get("model") == os.path.basename(d.MODEL))
    d.check("bounded: the whole run under 30 s", took < 30)
    d.finish()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        d.check("run", False, repr(e))
        d.finish()
