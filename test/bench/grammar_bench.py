#!/usr/bin/env python3
"""grammar_bench - dyn's token masks against xgrammar's and llguidance's
(see grammar.sh).

For each (vocabulary, case): a valid output text is tokenized and walked
token by token; before each token the allowed-token mask is computed.
dyn: grammar_bench (C) over the same tokens (its own tokenizer, which
equals HF's).  xgrammar: GrammarMatcher.fill_next_token_bitmask, after
compile_grammar; llguidance: llguidance.numpy.fill_next_token_bitmask on
an LLMatcher (JSON with the same ", " / ": " separators and no other
whitespace).  Each keeps its own per-grammar caches: a first pass fills
them ("cold"); the passes after it, each on a new matcher, are "warm"
(the per-token mean of the least disturbed of WARM_PASSES passes for the
Python libraries, of 20 for dyn: the machine is shared; the Python
libraries' times include the call from Python, as their users make it).
Numbers: microseconds per token (mean), compile milliseconds; ratios =
dyn / baseline (below 1: dyn is faster).  FIGURE lines (test/bench/run.sh)
give dyn's warm time against each baseline, and dyn's compile time.
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


WARM_PASSES = 5


def timed_passes(new_matcher, fill, accept, ids):
    """Mean us per token of the first pass, and of the fastest of
    WARM_PASSES more."""
    means = []
    for _ in range(1 + WARM_PASSES):
        m = new_matcher()
        total = 0.0
        for t in ids:
            t0 = time.perf_counter()
            fill(m)
            total += time.perf_counter() - t0
            assert accept(m, t), "the baseline refused a token of the text"
        means.append(total / len(ids) * 1e6)
    return {"cold_us": means[0], "warm_us": min(means[1:])}


def llg_run(llg, lln, tok, vocab, kind, spec, ids):
    t0 = time.perf_counter()
    if kind == "json":
        g = llg.LLMatcher.grammar_from_json_schema(json.dumps(spec), defaults={
            "whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "})
    else:
        g = llg.LLMatcher.grammar_from_regex(spec)
    llg.LLMatcher.validate_grammar(g, tok)
    compile_ms = (time.perf_counter() - t0) * 1e3
    bm = lln.allocate_token_bitmask(1, vocab)
    out = timed_passes(lambda: llg.LLMatcher(tok, g),
                       lambda m: lln.fill_next_token_bitmask(m, bm, 0),
                       lambda m, t: m.consume_token(t), ids)
    out["compile_ms"] = compile_ms
    return out


def xgr_run(xgr, compiler, info, kind, spec, ids):
    t0 = time.perf_counter()
    if kind == "json":
        cg = compiler.compile_grammar(xgr.Grammar.from_json_schema(json.dumps(spec),
                                                                   any_whitespace=False))
    else:
        cg = compiler.compile_regex(spec)
    compile_ms = (time.perf_counter() - t0) * 1e3
    bm = xgr.allocate_token_bitmask(1, info.vocab_size)
    out = timed_passes(lambda: xgr.GrammarMatcher(cg), lambda m: m.fill_next_token_bitmask(bm),
                       lambda m, t: m.accept_token(t), ids)
    out["compile_ms"] = compile_ms
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    a = ap.parse_args()
    import llguidance as llg
    import llguidance.hf
    import llguidance.numpy as lln
    import xgrammar as xgr
    from transformers import AutoTokenizer
    print(f"{'vocab':<19} {'case':<7} {'tok':>3} | {'compile ms: dyn':>15} {'xgr':>6} {'llg':>6} | "
          f"{'cold us: dyn':>12} {'xgr':>6} {'llg':>6} | {'warm us: dyn':>12} {'xgr':>5} "
          f"{'llg':>5} | {'dyn/xgr':>7} {'dyn/llg':>7}")
    figures = []
    worst = {"xgrammar": 0.0, "llguidance": 0.0}
    for model in ("qwen3-0.6b-shape", "llama-3.2-1b-shape"):
        d = os.path.join(MODELS, model)
        vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
        hf = AutoTokenizer.from_pretrained(d)
        info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab)
        compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        ltok = llguidance.hf.from_tokenizer(hf, n_vocab=vocab)
        eos = list(info.stop_token_ids)
        short = model.split("-")[0]
        for name, kind, spec, text in CASES:
            ids = hf.encode(text, add_special_tokens=False) + [eos[0]]
            ours = dyn(a.bench, d, vocab, eos, kind, spec, text)
            x = xgr_run(xgr, compiler, info, kind, spec, ids)
            lg = llg_run(llg, lln, ltok, vocab, kind, spec, ids)
            rx, rl = ours["warm_us"] / x["warm_us"], ours["warm_us"] / lg["warm_us"]
            worst["xgrammar"] = max(worst["xgrammar"], rx)
            worst["llguidance"] = max(worst["llguidance"], rl)
            print(f"{model:<19} {name:<7} {len(ids):>3} | {ours['compile_ms']:>15.2f} "
                  f"{x['compile_ms']:>6.1f} {lg['compile_ms']:>6.1f} | {ours['cold_us']:>12.0f} "
                  f"{x['cold_us']:>6.1f} {lg['cold_us']:>6.1f} | {ours['warm_us']:>12.1f} "
                  f"{x['warm_us']:>5.1f} {lg['warm_us']:>5.1f} | {rx:>7.2f} {rl:>7.2f}",
                  flush=True)
            for base, r in (("xgrammar", rx), ("llguidance", rl)):
                figures.append(f"FIGURE grammar_mask_warm_{short}_{name}_vs_{base} "
                               f"{ours['warm_us']:.2f} us {r:.3f} {base}")
            figures.append(f"FIGURE grammar_compile_{short}_{name} {ours['compile_ms']:.3f} ms "
                           f"{ours['compile_ms'] / x['compile_ms']:.4f} xgrammar")
    print("(warm: per-token mask time, mean of the fastest pass after the first, each on a "
          "new matcher; "
          "cold: the first pass, caches filling (dyn fills its mask cache lazily, off the "
          "engine's step thread; xgrammar and llguidance do most of it at compile); "
          f"worst warm ratio: {worst['xgrammar']:.2f}x xgrammar, "
          f"{worst['llguidance']:.2f}x llguidance)")
    for f in figures:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
