#!/usr/bin/env python3
"""grammar_bench - dyn's token masks against xgrammar's (see grammar.sh).

For each (vocabulary, case): a valid output text is tokenized and walked
token by token; before each token the allowed-token mask is computed.
dyn: grammar_bench (C) over the same tokens (its own tokenizer, which
equals HF's).  xgrammar: GrammarMatcher.fill_next_token_bitmask, after
compile_grammar (its compile and its own per-grammar caches: a first pass
fills them; the second, on a new matcher, is "warm" for both).
Numbers: microseconds per token (mean), compile milliseconds; ratio =
dyn / xgrammar (below 1: dyn is faster).
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(TOP, "..", "shared", "models")

CASES = [
    ("person", "json", {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "email": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "age"]},
     '{"name": "John Smith the third of his name", "age": 42, "email": "john@example.com", '
     '"tags": ["alpha", "beta gamma", "delta"]}'),
    ("nested", "json", {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "total": {"type": "number"}}, "required": ["items", "total"],
        "$defs": {"item": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "kind": {"enum": ["tool", "part", "other"]}},
            "required": ["id", "name", "kind"]}}},
     '{"items": [{"id": 1, "name": "hammer", "kind": "tool"}, {"id": 22, "name": "bolt M6 x 40",'
     ' "kind": "part"}, {"id": 333, "name": "a long descriptive name of an item", '
     '"kind": "other"}], "total": 1234.5}'),
    ("regex", "regex", r"[A-Z][a-z]+ [A-Z][a-z]+, \d{3}-\d{4}, [a-z]+@[a-z]+\.(com|org)",
     "Alice Smith, 555-1234, alice@example.org"),
]


def dyn(bench, d, vocab, eos, kind, spec, text):
    req = {"tokenizer": d, "vocab_size": vocab, "eos": eos, "kind": kind,
           "spec": spec if isinstance(spec, str) else json.dumps(spec), "text": text}
    r = subprocess.run([bench], input=json.dumps(req), capture_output=True, text=True,
                       timeout=600)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def xgr_run(xgr, compiler, info, kind, spec, ids):
    t0 = time.perf_counter()
    if kind == "json":
        cg = compiler.compile_grammar(xgr.Grammar.from_json_schema(json.dumps(spec),
                                                                   any_whitespace=False))
    else:
        cg = compiler.compile_regex(spec)
    compile_ms = (time.perf_counter() - t0) * 1e3
    bm = xgr.allocate_token_bitmask(1, info.vocab_size)
    out = {"compile_ms": compile_ms}
    for name in ("cold", "warm"):
        m = xgr.GrammarMatcher(cg)
        total = 0.0
        for t in ids:
            t0 = time.perf_counter()
            m.fill_next_token_bitmask(bm)
            total += time.perf_counter() - t0
            assert m.accept_token(t), "xgrammar refused a token of the text"
        out[name + "_us"] = total / len(ids) * 1e6
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    a = ap.parse_args()
    import xgrammar as xgr
    from transformers import AutoTokenizer
    print(f"{'vocab':<22} {'case':<8} {'tok':>4} {'dyn compile ms':>14} {'xgr compile ms':>14} "
          f"{'dyn cold us':>11} {'xgr cold us':>11} {'dyn warm us':>11} {'xgr warm us':>11} "
          f"{'warm ratio':>10}")
    for model in ("qwen3-0.6b-shape", "llama-3.2-1b-shape"):
        d = os.path.join(MODELS, model)
        vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
        hf = AutoTokenizer.from_pretrained(d)
        info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab)
        compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        eos = list(info.stop_token_ids)
        for name, kind, spec, text in CASES:
            ids = hf.encode(text, add_special_tokens=False) + [eos[0]]
            ours = dyn(a.bench, d, vocab, eos, kind, spec, text)
            theirs = xgr_run(xgr, compiler, info, kind, spec, ids)
            print(f"{model:<22} {name:<8} {len(ids):>4} {ours['compile_ms']:>14.2f} "
                  f"{theirs['compile_ms']:>14.2f} {ours['cold_us']:>11.1f} "
                  f"{theirs['cold_us']:>11.1f} {ours['warm_us']:>11.1f} "
                  f"{theirs['warm_us']:>11.1f} {ours['warm_us'] / theirs['warm_us']:>10.2f}",
                  flush=True)
    print("(ratio = dyn warm / xgrammar warm per-token mask time; cold = first pass, "
          "dyn's cache filling, which xgrammar does at compile time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
