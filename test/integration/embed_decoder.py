"""embed_decoder.py - a decoder model as an embedder, Qwen3-Embedding style:
a tiny Qwen3 with random weights (transformers, seed fixed, saved as
safetensors in F32), the qwen3-0.6b-shape tokenizer, and the
sentence-transformers modules Qwen3-Embedding has (Transformer, Pooling
with pooling_mode_lasttoken, Normalize).  `dyn run MODEL --embed` must give
sentence-transformers' vectors (pinned, CPU, hub offline) for every text,
cosine >= 0.9999 and every component within 1e-4; the same folder served
by `dyn serve` (engine auto: embed) answers /v1/embeddings with them.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
QWEN = os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape")

try:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import Qwen3Config, Qwen3ForCausalLM
except ImportError as e:
    d.skip("oracle", f"transformers or sentence-transformers missing ({e})")
    d.finish()

TEXTS = ["What is the capital of China?", "Explain gravity", "Ünïcödé 中文 🙂 text",
         "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3]


def build(dirname):
    torch.manual_seed(1234)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, max_position_embeddings=512, rope_theta=1000000.0,
                      tie_word_embeddings=True, rms_norm_eps=1e-6)
    m = Qwen3ForCausalLM(cfg).float()
    m.save_pretrained(dirname, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        os.symlink(os.path.join(QWEN, f), os.path.join(dirname, f))
    with open(os.path.join(dirname, "modules.json"), "w") as f:
        json.dump([{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize"}], f)
    os.makedirs(os.path.join(dirname, "1_Pooling"))
    with open(os.path.join(dirname, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 64, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False,
                   "pooling_mode_lasttoken": True, "include_prompt": True}, f)
    with open(os.path.join(dirname, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 512, "do_lower_case": False}, f)


def main():
    if not os.path.exists(os.path.join(QWEN, "tokenizer.json")):
        d.skip("oracle", f"{QWEN} missing")
        return
    mdir = os.path.join(d.tmp, "qwen3-embed")
    build(mdir)
    st = SentenceTransformer(mdir, device="cpu")
    # one at a time: no padding for the last-token rule to get wrong
    want = np.array([st.encode([t], batch_size=1)[0] for t in TEXTS], np.float64)
    p = d.subprocess.run([d.DYN, "run", mdir, "--embed"], input="".join(t + "\n" for t in TEXTS),
                         capture_output=True, text=True, timeout=120)
    if not d.check("dyn run --embed runs", p.returncode == 0, p.stderr[-500:]):
        return
    g = np.array([json.loads(x) for x in p.stdout.splitlines()], np.float64)
    cos = (g * want).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(want, axis=1)
    diff = float(np.abs(g - want).max())
    d.check("last-token pooling: cosine >= 0.9999 with sentence-transformers",
            g.shape == want.shape and cos.min() >= 0.9999, str(cos))
    d.check("every component within 1e-4", diff < 1e-4, f"max difference {diff:.3g}")

    d.Proc(["serve", "--model", mdir, "--served-model-name", "qwen3-embed", "--system-port",
            "0"], r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    fe = d.frontend()
    d.wait_until(lambda: "qwen3-embed" in d.http_get(fe.url + "/v1/models")[1], timeout=30)
    status, r = d.post_json(fe.url + "/v1/embeddings", {"model": "qwen3-embed", "input": TEXTS})
    ok = status == 200 and len(r["data"]) == len(TEXTS)
    served = np.array([e["embedding"] for e in r["data"]]) if ok else None
    d.check("/v1/embeddings serves the same vectors", ok and np.allclose(served, g, atol=1e-6),
            str(r)[:300])


main()
d.finish()
