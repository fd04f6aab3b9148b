#!/usr/bin/env python3
"""grammar_masks - dyn's token masks (core/grammar) against xgrammar's.

For JSON schemas, regexes, GBNF grammars and choices, on the Qwen3 and
Llama 3 tokenizers (the *-shape fixtures), and for prefixes of valid
texts cut at every character boundary, the set of tokens dyn allows next
must equal xgrammar's token bitmask for the same grammar and prefix.
xgrammar is configured to dyn's JSON layout (any_whitespace=False: ", "
and ": " separators, no other whitespace).  The stop tokens are
xgrammar's own stop_token_ids, given to dyn as its eos ids.

Intentional differences: special tokens (other than the stop tokens)
are never allowed by dyn (their text is not what the grammar would see
once special tokens are skipped); xgrammar allows those whose text fits
(e.g. "<|im_start|>" inside a JSON string), so they are dropped from its
sets before comparing.  Kept out of the cases: strings with
minLength/maxLength (xgrammar then drops escapes and allows raw control
characters, which JSON forbids), bounds on non-integer numbers.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as dp  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HELPER = os.path.join(dp.TOP, os.environ.get("BUILD", "build/rel"), "test", "test_grammar")
MODELS = os.path.join(dp.TOP, "..", "shared", "models")

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer"},
    "score": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "kind": {"enum": ["cat", "dog", None, 3]},
    "ok": {"type": "boolean"}},
    "required": ["name", "age"], "additionalProperties": False}
NESTED = {"type": "object", "properties": {
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["items"], "additionalProperties": False,
    "$defs": {"item": {"type": "object", "properties": {
        "id": {"type": "integer"}, "price": {"type": "number"}},
        "required": ["id", "price"], "additionalProperties": False}}}

CASES = [
    ("json", json.dumps(SCHEMA), [
        '{"name": "Zoë \\"Z\\"", "age": 42, "score": -1.5e3, "tags": ["a", "b c"], '
        '"kind": "cat", "ok": true}',
        '{"name": "", "age": 0, "kind": null}']),
    ("json", json.dumps(NESTED), [
        '{"items": [{"id": 1, "price": 9.99}, {"id": -20, "price": 0}], "note": "hi"}']),
    ("regex", r"\d{3}-[A-Z][a-z]+( [A-Z][a-z]+)?", ["555-Hello World", "123-Ab"]),
    ("regex", r"(yes|no|maybe)\.?", ["maybe.", "no"]),
    ("grammar", 'root ::= greeting " " name "!"\ngreeting ::= "hello" | "hi"\n'
                'name ::= [a-z]+ ("-" [a-z]+)*', ["hello bob-smith!", "hi x!"]),
    ("choice", json.dumps(["positive", "negative", "neutral"]), ["negative"]),
    ("json_object", "", ['{"a": [1, {"b": null}], "c": "\\u00e9x"}']),
]


def xgr_masks(xgr, info, compiler, kind, spec, prefixes, vocab):
    import numpy as np
    if kind == "json":
        cg = compiler.compile_grammar(
            xgr.Grammar.from_json_schema(spec, any_whitespace=False))
    elif kind == "json_object":
        cg = compiler.compile_grammar(
            xgr.Grammar.from_json_schema('{"type": "object"}', any_whitespace=False))
    elif kind == "regex":
        cg = compiler.compile_regex(spec)
    elif kind == "grammar":
        cg = compiler.compile_grammar(spec)
    else:
        alts = " | ".join(json.dumps(c) for c in json.loads(spec))
        cg = compiler.compile_grammar("root ::= " + alts)
    out = []
    bm = xgr.allocate_token_bitmask(1, info.vocab_size)
    for p in prefixes:
        m = xgr.GrammarMatcher(cg)
        if p and not m.accept_string(p):
            out.append(None)
            continue
        m.fill_next_token_bitmask(bm)
        bits = np.unpackbits(bm[0].numpy().view(np.uint8), bitorder="little")[:vocab]
        out.append(set(np.nonzero(bits)[0].tolist()))
    return out


def main():
    try:
        import xgrammar as xgr
        from transformers import AutoTokenizer
    except ImportError as e:
        dp.skip("masks", f"xgrammar/transformers not installed ({e})")
        return 0
    if not os.path.exists(HELPER):
        dp.skip("masks", f"{HELPER} not built")
        return 0
    for model in ("qwen3-0.6b-shape", "llama-3.2-1b-shape"):
        d = os.path.join(MODELS, model)
        vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
        hf = AutoTokenizer.from_pretrained(d)
        info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab)
        compiler = xgr.GrammarCompiler(info)
        special = set(hf.all_special_ids) | {i for i, t in hf.added_tokens_decoder.items()
                                             if t.special}
        special -= set(info.stop_token_ids)
        for ci, (kind, spec, texts) in enumerate(CASES):
            prefixes = sorted({t[:i] for t in texts for i in range(len(t) + 1)})
            req = {"tokenizer": d, "vocab_size": vocab, "eos": list(info.stop_token_ids),
                   "kind": kind, "spec": spec, "prefixes": prefixes}
            r = subprocess.run([HELPER, "--masks"], input=json.dumps(req), text=True,
                               capture_output=True, timeout=600)
            name = f"{model}/{kind}{ci}"
            if r.returncode:
                dp.check(name, False, r.stderr.strip()[-300:])
                continue
            ours = json.loads(r.stdout)["masks"]
            theirs = xgr_masks(xgr, info, compiler, kind, spec, prefixes, vocab)
            theirs = [None if b is None else b - special for b in theirs]
            bad = []
            for p, a, b in zip(prefixes, ours, theirs):
                a = None if a is None else set(a)
                if a != b:
                    extra = sorted((a or set()) - (b or set()))[:5]
                    miss = sorted((b or set()) - (a or set()))[:5]
                    bad.append(f"after {p!r}: dyn only {[hf.convert_ids_to_tokens(x) for x in extra]}"
                               f" xgrammar only {[hf.convert_ids_to_tokens(x) for x in miss]}")
            dp.check(name, not bad, f"{len(bad)}/{len(prefixes)} prefixes differ; " + "; ".join(bad[:3]))
            if not bad:
                sizes = [len(x) for x in ours if x is not None]
                print(f"# {name}: {len(prefixes)} prefixes, allowed tokens "
                      f"{min(sizes)}..{max(sizes)}", flush=True)
    return dp.failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
