"""planner_profile - `dyn profile` against one mock worker (qwen3-0.6b-shape
config and tokenizer, no weights) behind a frontend recovers the mock
engine's timing model.

The reference is the mocker polynomials of core/engine/mock.h (Dynamo's),
evaluated here in Python: TTFT at ISL t is prefill(t); a decode step at c
sequences of ISL 128 with 64-token blocks in a pool of 64 blocks takes
decode(u) with u = c * 3 / 64 in the middle of the output (128 + 32 tokens
fill 3 blocks).  Tolerance: 10% + 2 ms (HTTP and scheduling overhead).
Decode throughput: within 25% of c / ITL (the run's wall time also holds
the prefills).  Bad input: a list that is not ascending, a server that
is not there.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
BLOCK, POOL = 64, 64


def prefill_ms(t):
    return 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142


def decode_ms(u):
    return max(1.0, -25.74 * u * u + 54.01 * u + 5.74)


def near(measured, expected, rel=0.10, abs_ms=2.0):
    return abs(measured - expected) <= rel * expected + abs_ms


w = d.Proc(["serve", "--model", SHAPE, "--engine", "mock", "--served-model-name", "m",
            "--speedup-ratio", "1", "--kv-cache-tokens", str(BLOCK * POOL),
            "--system-port", "0"], r"instance ([0-9a-f]{16}) .* system port (\d+)")
fe = d.frontend()
out = os.path.join(d.tmp, "profile.json")
r = subprocess.run([d.DYN, "profile", "--url", fe.url, "--engine", "mock",
                    "--isl", "128,512,2048", "--concurrency", "1,4,8", "--osl", "64",
                    "--decode-isl", "128", "--requests", "6", "--output", out],
                   capture_output=True, text=True, timeout=120)
d.check("profile_runs", r.returncode == 0, r.stderr)
if r.returncode == 0:
    with open(out) as f:
        p = json.load(f)
    d.check("profile_header", p["version"] == 1 and p["model"] == "m" and p["engine"] == "mock",
            str(p))
    pre = p["prefill"]
    d.check("profile_isl_counted", [x["isl"] for x in pre] == [128, 512, 2048], str(pre))
    for x in pre:
        exp = prefill_ms(x["isl"])
        d.check(f"profile_ttft_isl{x['isl']}", near(x["ttft_ms"], exp),
                f"measured {x['ttft_ms']:.2f} ms, model {exp:.2f} ms")
        print(f"INFO: prefill isl {x['isl']}: {x['ttft_ms']:.2f} ms (model {exp:.2f})")
    dec = p["decode"]
    d.check("profile_concurrencies", [x["concurrency"] for x in dec] == [1, 4, 8], str(dec))
    for x in dec:
        c = x["concurrency"]
        exp = decode_ms(c * 3 / POOL)
        d.check(f"profile_itl_c{c}", near(x["itl_ms"], exp),
                f"measured {x['itl_ms']:.2f} ms, model {exp:.2f} ms")
        tps = c * 1000 / x["itl_ms"]
        d.check(f"profile_decode_tps_c{c}", abs(x["tokens_per_s"] - tps) <= 0.25 * tps,
                f"{x['tokens_per_s']:.0f} tokens/s vs {tps:.0f}")
        print(f"INFO: decode c={c}: itl {x['itl_ms']:.2f} ms (model {exp:.2f}), "
              f"{x['tokens_per_s']:.0f} tokens/s")

r = subprocess.run([d.DYN, "profile", "--url", fe.url, "--isl", "512,128"],
                   capture_output=True, text=True, timeout=30)
d.check("profile_bad_list", r.returncode == 2 and "ascending" in r.stderr, r.stderr)
r = subprocess.run([d.DYN, "profile", "--url", "http://127.0.0.1:1", "--model", "m",
                    "--isl", "128", "--concurrency", "1", "--timeout", "5"],
                   capture_output=True, text=True, timeout=60)
d.check("profile_no_server", r.returncode == 1 and "dyn profile:" in r.stderr and
        "failed" in r.stderr, r.stderr)
d.finish()
