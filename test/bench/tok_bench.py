#!/usr/bin/env python3
"""tok_bench.py - dyn's tokenizer vs Hugging Face tokenizers, side by side.

Both encode the same documents (about 2 MB: the licence texts in
/usr/share/common-licenses as prose, Python standard-library sources as
code, and the multilingual conformance corpus) one document at a time on
one thread, then decode them.  HF runs in this process with
RAYON_NUM_THREADS=1; dyn runs test/bench/tok_bench.c.  Both keep their
word caches across documents, as a server would.  The token ids must be
identical (an FNV-1a hash over all ids is compared).

Prints one row per tokenizer: load time of tokenizer.json, encode and
decode throughput (MB of text per second) and dyn/HF ratios.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.normpath(os.path.join(ROOT, "..", "shared", "models"))
TOKENIZERS = ["qwen3-0.6b-shape", "llama-3.2-1b-shape", "tinyllama-1.1b-shape"]


def documents():
    docs = []
    for f in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(f):
            with open(f, encoding="utf-8", errors="replace") as fh:
                docs += [p for p in fh.read().split("\n\n") if p.strip()]
    n = 0
    for f in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        with open(f, encoding="utf-8", errors="replace") as fh:
            t = fh.read()
        docs += [p for p in t.split("\n\n") if p.strip()]
        n += len(t)
        if n > 1_500_000:
            break
    with open(os.path.join(ROOT, "test", "fixtures", "tok_corpus.json"), encoding="utf-8") as fh:
        corpus = [c for c in json.load(fh) if not any(0xDC80 <= ord(ch) <= 0xDCFF for ch in c)]
    return docs + corpus * 3


def fnv(ids_lists):
    h = 1469598103934665603
    for ids in ids_lists:
        for i in ids:
            h ^= i & 0xFFFFFFFF
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def hf_side(path, docs, nbytes, seconds):
    from tokenizers import Tokenizer
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(path)
    load_ms = (time.perf_counter() - t0) * 1000
    first = [tok.encode(d, add_special_tokens=False).ids for d in docs]
    rounds, t0 = 0, time.perf_counter()
    while True:
        for d in docs:
            tok.encode(d, add_special_tokens=False)
        rounds += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            break
    enc = nbytes * rounds / el / 1e6
    rounds, t0 = 0, time.perf_counter()
    while True:
        for ids in first:
            tok.decode(ids, skip_special_tokens=False)
        rounds += 1
        el = time.perf_counter() - t0
        if el >= seconds / 2:
            break
    dec = nbytes * rounds / el / 1e6
    return {"load_ms": load_ms, "encode_mb_s": enc, "decode_mb_s": dec,
            "tokens": sum(len(x) for x in first), "ids_hash": fnv(first)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="the tok_bench binary")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("TOK_BENCH_SECONDS", "3")))
    args = ap.parse_args()
    try:
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(f"tok: HF tokenizers not importable ({e}); run 'make venv'")
        return 1
    docs = documents()
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    print(f"{len(docs)} documents, {nbytes / 1e6:.2f} MB (prose, code, 40+ scripts); "
          f"one thread each side, {args.seconds:g} s per measurement")
    print(f"{'tokenizer':<22} {'load ms dyn/HF':>15} {'encode MB/s dyn/HF':>20} {'ratio':>6} "
          f"{'decode MB/s dyn/HF':>20} {'ratio':>6}  ids")
    status = 0
    with tempfile.TemporaryDirectory(prefix="dyn-tokbench-") as tmp:
        docs_path = os.path.join(tmp, "docs.jsonl")
        with open(docs_path, "w", encoding="utf-8") as fh:
            for d in docs:
                fh.write(json.dumps(d) + "\n")
        for model in TOKENIZERS:
            mdir = os.path.join(MODELS, model)
            path = os.path.join(mdir, "tokenizer.json")
            if not os.path.exists(path):
                print(f"{model:<22} (missing: {path})")
                continue
            p = subprocess.run([args.bench, mdir, docs_path, str(args.seconds)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{model:<22} tok_bench failed: {p.stderr.strip()}")
                status = 1
                continue
            d = json.loads(p.stdout)
            h = hf_side(path, docs, nbytes, args.seconds)
            same = d["ids_hash"] == h["ids_hash"] and d["tokens"] == h["tokens"]
            if not same:
                status = 1
            print(f"{model:<22} {d['load_ms']:>7.0f}/{h['load_ms']:<7.0f} "
                  f"{d['encode_mb_s']:>10.2f}/{h['encode_mb_s']:<9.2f} "
                  f"{d['encode_mb_s'] / h['encode_mb_s']:>6.1f} "
                  f"{d['decode_mb_s']:>10.2f}/{h['decode_mb_s']:<9.2f} "
                  f"{d['decode_mb_s'] / h['decode_mb_s']:>6.1f}  "
                  f"{'same' if same else 'DIFFERENT'} ({d['tokens']} tokens)")
            # Headline figures for test/bench/run.sh (FIGURE name value unit ratio baseline).
            print(f"FIGURE tok.encode.{model} {d['encode_mb_s']:.2f} MB/s "
                  f"{d['encode_mb_s'] / h['encode_mb_s']:.2f} hf_tokenizers")
            print(f"FIGURE tok.decode.{model} {d['decode_mb_s']:.2f} MB/s "
                  f"{d['decode_mb_s'] / h['decode_mb_s']:.2f} hf_tokenizers")
    return status


if __name__ == "__main__":
    sys.exit(main())
