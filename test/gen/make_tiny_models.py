#!/usr/bin/env python3
"""make_tiny_models.py - build tiny randomly initialised models of each
architecture dyn supports with Hugging Face transformers, and their
reference logits, as fixtures under test/fixtures/tiny-models/.

Run by hand (needs torch and transformers, not part of CI):
    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers safetensors
    /tmp/hf/bin/python test/gen/make_tiny_models.py

Each model: hidden 64, 2 layers, vocab 256, F32, fixed seed.  For each
prompt the reference holds the prefill logits of the last prompt position
and then, for 6 greedy steps, the chosen token and that step's logits
(reference.json: {"prompts": [{"ids": [...], "steps": [{"token": t,
"logits": [...]}, ...]}]}).  Step 0's logits are the prefill logits.
"""
import json
import os

import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tiny-models")
COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=256,
              max_position_embeddings=256, rms_norm_eps=1e-6, torch_dtype="float32",
              bos_token_id=1, eos_token_id=2)
MODELS = {
    "llama-gqa-llama3rope": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        num_attention_heads=8, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64),
        tie_word_embeddings=True)),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, dict(
        num_attention_heads=4, num_key_value_heads=2, sliding_window=None,
        tie_word_embeddings=False)),
    "qwen2-bias": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen3-qknorm": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)),
}
PROMPTS = [[1, 17, 93, 5, 200, 44, 44, 7, 130, 3, 9, 250, 18, 61, 77, 101, 33, 12, 1, 8, 99, 150],
           [1, 17, 93, 5, 200, 44, 44, 7, 130, 3, 9, 250, 18, 61, 77, 101, 5],
           [1, 42]]
STEPS = 6


def classic_rope_config(path):
    """transformers >= 5 writes "rope_parameters"; checkpoints on the hub (and
    dyn's config parser) use the classic "rope_theta" + "rope_scaling" form,
    which means the same: write that."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters", None)
    if rp:
        rp = dict(rp)
        cfg["rope_theta"] = rp.pop("rope_theta", 10000.0)
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = rp
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def main():
    for name, (cfg_cls, model_cls, extra) in MODELS.items():
        torch.manual_seed(1234)
        cfg = cfg_cls(**COMMON, **extra)
        model = model_cls(cfg).eval()
        # make the norms and biases non-trivial, so they are really tested
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                elif pname.endswith(".bias"):
                    p.copy_(0.1 * torch.randn_like(p))
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        classic_rope_config(os.path.join(d, "config.json"))
        ref = {"prompts": []}
        for ids in PROMPTS:
            seq = list(ids)
            steps = []
            with torch.no_grad():
                for _ in range(STEPS):
                    logits = model(torch.tensor([seq])).logits[0, -1].float()
                    tok = int(torch.argmax(logits))
                    steps.append({"token": tok, "logits": [round(float(x), 6) for x in logits]})
                    seq.append(tok)
            ref["prompts"].append({"ids": ids, "steps": steps})
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        print("wrote", d)


if __name__ == "__main__":
    main()
