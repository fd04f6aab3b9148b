"""benchrun - what the Python benchmarks that replay a trace share: the
model their mock workers serve, a private store per deployment, and the
replay itself (dyn bench --fixed-schedule through a frontend).
"""
import json
import os
import subprocess

import dynproc as d

MODEL = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
BLOCK_LEN = 64	# tokens per hash id of the traces they write


def new_deployment(label):
    """Forget the processes of the deployment before (stopped by the
    caller) and give the next one a store of its own."""
    d.procs.clear()
    d.store = "file://" + os.path.join(d.tmp, "store-" + label)


def replay(url, trace, label, timeout_s):
    """Replay trace through the frontend at url on its own schedule; the
    run of dyn bench's JSON report (aggregate, records)."""
    out = os.path.join(d.tmp, f"bench-{label}.json")
    p = subprocess.run([d.DYN, "bench", "--url", url, "--model", NAME, "--no-progress",
                        "--endpoint", "completions", "--tokenizer", MODEL, "--trace", trace,
                        "--block-len", str(BLOCK_LEN), "--fixed-schedule",
                        "--timeout", str(timeout_s), "--json", out],
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"dyn bench ({label}) exited {p.returncode}: {p.stderr[-600:]}")
    with open(out) as f:
        return json.load(f)["runs"][0]
