"""gguf_tok.py - a GGUF's tokenizer metadata gives the Hugging Face
tokenizer's ids.

For each fixture tokenizer, a GGUF carries the tokenizer metadata that
llama.cpp's converter writes for it (pylib/ggufw.py): from tokenizer.model
via sentencepiece for the SentencePiece models (stories260K, TinyLlama:
"llama", pieces + scores + types), from tokenizer.json for the byte-level
BPE ones (Qwen3: pre "qwen2", Llama 3.2: pre "llama-bpe"; "gpt2", tokens +
merges + types), with no tokenizer.json beside it.  `dyn tokenize X.gguf
--jsonl` on every string of test/fixtures/tok_corpus.json must give the
ids that HF `tokenizers` gives with the model's own tokenizer.json (special
tokens added as its post-processor adds them), and decoding those ids the
text HF decodes.  The checks would notice a wrong pre-tokenizer or merge
order: the Qwen3 metadata labelled "llama-bpe", and the TinyLlama scores
reversed, must both give other ids.
"""
import json
import os
import sys
import tempfile
import shutil
import subprocess

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

TOP = d.TOP
report = d.check
MODELS = os.path.normpath(os.path.join(TOP, "..", "shared", "models"))
CORPUS = os.path.join(TOP, "test", "fixtures", "tok_corpus.json")

try:
    import numpy as np
    import gguf
    import ggufw
    import sentencepiece  # noqa: F401
    from tokenizers import Tokenizer
except ImportError as e:
    d.skip("gguf tokenizer oracle", f"not installed ({e}; test/requirements.txt)")
    d.finish()

CASES = [("stories260K", "tok512.model", None), ("tinyllama-1.1b-shape", "tokenizer.model", None),
         ("qwen3-0.6b-shape", None, "qwen2"), ("llama-3.2-1b-shape", None, "llama-bpe")]


def tok_gguf(path, cfg, tok):
    """A GGUF with the tokenizer metadata and the least of a model
    (hyperparameters and an embedding of the vocabulary's size)."""
    arch = ggufw.ARCH[cfg["architectures"][0]]
    w = gguf.GGUFWriter(path, arch)
    small = {"max_position_embeddings": 64, "hidden_size": 8, "num_hidden_layers": 1,
             "intermediate_size": 8, "num_attention_heads": 2, "rms_norm_eps": 1e-6}
    ggufw.hparams(w, small, arch)
    tok(w)
    w.add_tensor("token_embd.weight", np.zeros((cfg["vocab_size"], 8), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def metadata(name, model_file, pre, **kw):
    mdir = os.path.join(MODELS, name)
    with open(os.path.join(mdir, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(mdir, "tokenizer_config.json")) as fh:
        tc = json.load(fh)
    if model_file:
        return cfg, ggufw.spm_tokenizer(os.path.join(mdir, model_file), tc, cfg, **kw)
    return cfg, ggufw.bpe_tokenizer(os.path.join(mdir, "tokenizer.json"), tc, cfg, pre)


def dyn_jsonl(args, items):
    """dyn ARGS --jsonl over items (one JSON value a line): its answers, or
    None when it failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYN_", "HF_"))}
    p = subprocess.run([d.DYN, *args], env=env, capture_output=True, text=True, timeout=120,
                       input="".join(json.dumps(s) + "\n" for s in items))
    if p.returncode:
        sys.stderr.write(p.stderr)
        return None
    return [json.loads(ln) for ln in p.stdout.split("\n") if ln]


def dyn_ids(path, corpus):
    got = dyn_jsonl(["tokenize", path, "--jsonl"], corpus)
    return got, "" if got is not None else "dyn tokenize failed"


def main():
    with open(CORPUS, encoding="utf-8") as fh:
        corpus = json.load(fh)
    # dyn reads \udcXX escapes as raw bytes and replaces invalid UTF-8 as Python does
    texts = [s.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for s in corpus]
    tmp = tempfile.mkdtemp(prefix="dyn-gguf-tok-")
    try:
        for name, model_file, pre in CASES:
            cfg, tok = metadata(name, model_file, pre)
            path = os.path.join(tmp, name + ".gguf")
            tok_gguf(path, cfg, tok)
            hf = Tokenizer.from_file(os.path.join(MODELS, name, "tokenizer.json"))
            want = [hf.encode(t, add_special_tokens=True).ids for t in texts]
            got, err = dyn_ids(path, corpus)
            bad = [i for i in range(len(want)) if not got or got[i] != want[i]]
            report(f"{name}: GGUF tokenizer metadata gives HF's ids on the corpus "
                   f"({len(texts)} strings)", got is not None and not bad,
                   err or (f"{len(bad)} differ, first {texts[bad[0]][:40]!r}: "
                           f"{got[bad[0]][:12]} vs {want[bad[0]][:12]}" if bad else ""))
            texts_back = dyn_jsonl(["detokenize", path, "--jsonl"], want)
            hf_back = [hf.decode(ids, skip_special_tokens=False) for ids in want]
            bad = [i for i in range(len(want)) if not texts_back or texts_back[i] != hf_back[i]]
            report(f"{name}: GGUF tokenizer decodes HF's ids as HF does",
                   texts_back is not None and not bad,
                   f"{len(bad)} differ, first {texts_back[bad[0]]!r} vs {hf_back[bad[0]]!r}"
                   if bad and texts_back else "")
        # the comparisons can fail: a wrong pre-tokenizer, a wrong merge order
        for name, model_file, pre, kw in (
                ("qwen3-0.6b-shape", None, "llama-bpe", {}),
                ("tinyllama-1.1b-shape", "tokenizer.model", None, {"scores": "reversed"})):
            cfg, tok = metadata(name, model_file, pre, **kw)
            path = os.path.join(tmp, name + "-wrong.gguf")
            tok_gguf(path, cfg, tok)
            hf = Tokenizer.from_file(os.path.join(MODELS, name, "tokenizer.json"))
            got, err = dyn_ids(path, corpus)
            want = [hf.encode(t, add_special_tokens=True).ids for t in texts]
            report(f"{name}: wrong metadata ({pre or 'reversed scores'}) gives other ids",
                   got is not None and got != want, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
