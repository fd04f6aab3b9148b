"""logits_transformers - dyn's logits against Hugging Face transformers
(pinned in test/requirements.txt; torch on the CPU, float32, offline) on
the same weights, for every weight format dyn runs.

Models: stories260K (its real weights), and two made here with
transformers' config classes and random weights (save_pretrained as
safetensors), with stories260K's tokenizer (vocabulary 512): a Qwen3 one
(q_norm/k_norm, GQA 4/2, head dim 32, untied head) and a Llama one (GQA
8/2, llama3 RoPE scaling, untied head).

Formats (FORMATS, one row each; a new weight format is one more row):
the checkpoint is stored in the row's dtype (F32, or BF16 / F16: the
weights rounded once, as a BF16 checkpoint holds them) and dyn runs it
with the row's options; transformers computes in F32 on the same stored
values (a 16-bit checkpoint upcast), or, for a format dyn makes at load
(--quantize q8_0), on the F32 values it was made from.  dyn runs with an
F32 KV cache (what the K/V dtype costs is kv_dtype.py's), except the row
that checks the default (f16) cache.

For each model and format: `dyn run --raw --temperature 0 --logits-file`
decodes STEPS greedy tokens after a text prompt; transformers runs the
prompt and dyn's tokens in one forward pass; at every step, every
logprob of the vocabulary must be within the row's tolerance of
transformers', and dyn's token must be transformers' argmax unless
transformers' top two are closer than the tolerance (a near tie that a
rounding may flip).  Then stories260K's 200-token golden greedy text
(llama2.c's own) for the rows marked so.
"""
import copy
import json
import os
import shutil
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

try:
    import torch
    import transformers
except ImportError as e:
    d.skip("transformers oracle", f"not installed ({e}; test/requirements.txt)")
    d.finish()

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()
STEPS = 40
PROMPT = "Once upon a time there was a little girl. She liked to"
GOLDEN = os.path.join(d.MODEL, "expected_greedy_from_bos.txt")
F32_KV = ["--kv-cache-dtype", "f32"]

# name, checkpoint dtype, dyn options, tolerance (max |logprob - transformers'|
# over the vocabulary and every step), 200-token golden expected.  Measured
# on this machine, largest over the three models (the PASS lines say each):
# f32 1.9e-5, bf16 1.3e-5, f16 1.6e-5 (stories260K; the random ones 4e-6),
# q8_0 0.33 (stories260K; 0.15 the random ones; int8 activations, as
# llama.cpp: 0.24 with F32 ones), q4_0 6.4 (1.6), default KV cache 0.017.
# q8_0's stories260K greedy text leaves the golden at token 114, where
# F32's top two are 0.04 apart (quant_q8.py, test_tiny_models).
FORMATS = [
    ("f32", torch.float32, F32_KV, 1e-4, True),
    ("bf16", torch.bfloat16, F32_KV, 1e-4, False),
    ("f16", torch.float16, F32_KV, 1e-4, False),
    ("q8_0", torch.float32, F32_KV + ["--quantize", "q8_0"], 0.4, False),
    ("q4_0", torch.float32, F32_KV + ["--quantize", "q4_0"], 8.0, False),
    ("f32, default KV cache (f16)", torch.float32, [], 0.05, True),
]

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=512,
              max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
              initializer_range=0.1)    # peaked distributions (0.02: nearly uniform)
RANDOM = {
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64))),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def classic_rope_config(folder):
    """transformers 5 writes "rope_parameters"; checkpoints on the hub use
    "rope_theta" + "rope_scaling" (the same thing), which dyn reads."""
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters", None)
    if rp:
        rp = dict(rp)
        cfg["rope_theta"] = rp.pop("rope_theta", 10000.0)
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = rp
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def save(model, folder, dtype):
    """model's weights stored in dtype, as a Hugging Face folder dyn loads."""
    copy.deepcopy(model).to(dtype).save_pretrained(folder, safe_serialization=True)
    classic_rope_config(folder)
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(d.MODEL, f), folder)


def models(tmp):
    """name -> the F32 transformers model."""
    out = {"stories260K": transformers.AutoModelForCausalLM.from_pretrained(
        d.MODEL, dtype=torch.float32)}
    for name, (cfg_cls, model_cls, extra) in RANDOM.items():
        torch.manual_seed(len(name))
        m = model_cls(cfg_cls(**COMMON, **extra))
        with torch.no_grad():   # norms away from 1, so that their weights count
            for n, p in m.named_parameters():
                if "norm" in n:
                    p.uniform_(0.5, 1.5)
        out[name] = m.eval()
    return out


def reference_logprobs(folder, ids):
    """transformers' F32 logprobs at every position of ids, the weights
    read from folder (a 16-bit checkpoint upcast to F32)."""
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return torch.log_softmax(m(torch.tensor([ids])).logits[0].double(), dim=-1)


def dyn_greedy(folder, opts, prompt, max_tokens, logits):
    p = d.run_offline("run", folder, "--raw", "--temperature", "0", "--threads", "1",
                      "--prompt", prompt, "--max-tokens", str(max_tokens),
                      "--logits-file", logits, *opts)
    rec = None
    if p.returncode == 0:
        with open(logits) as f:
            rec = json.loads(f.readline())
    return p, rec


def check(name, fmt, opts, tol, folder, tmp):
    label = f"{name} {fmt}"
    logits = os.path.join(tmp, f"{name}-{fmt}.jsonl")
    p, rec = dyn_greedy(folder, opts, PROMPT, STEPS, logits)
    if not d.check(f"{label}: dyn run --logits-file", rec and len(rec["logits"]) ==
                   len(rec["tokens"]) == STEPS, p.stderr[-400:]):
        return
    ids = rec["prompt"] + rec["tokens"][:-1]
    ref = reference_logprobs(folder, ids)[len(rec["prompt"]) - 1:]
    got = torch.log_softmax(torch.tensor(rec["logits"], dtype=torch.float64), dim=-1)
    worst = (got - ref).abs().max().item()
    top2 = ref.topk(2, dim=-1).values
    flips = [i for i, t in enumerate(rec["tokens"])
             if t != ref[i].argmax().item() and (top2[i, 0] - top2[i, 1]).item() >= tol]
    d.check(f"{label}: every logprob within {tol} of transformers' (max {worst:.2e}), "
            "greedy tokens its argmax", worst <= tol and not flips,
            f"max diff {worst}; steps choosing another token than a clear argmax: {flips}")


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-logits-hf-")
    try:
        with open(GOLDEN) as f:
            golden = f.read()
        for name, model in models(tmp).items():
            for dt in {f[1] for f in FORMATS}:
                save(model, os.path.join(tmp, name, str(dt)), dt)
            for fmt, dt, opts, tol, want_golden in FORMATS:
                # transformers reads the checkpoint dyn loads: the values a
                # format made at load (q8_0) was made from
                folder = os.path.join(tmp, name, str(dt))
                check(name, fmt, opts, tol, folder, tmp)
                if name == "stories260K" and want_golden:
                    p = d.run_offline("run", folder, "--raw", "--temperature", "0",
                                      "--prompt", "", "--max-tokens", "200", *opts)
                    d.check(f"{name} {fmt}: the 200-token golden greedy text",
                            p.returncode == 0 and p.stdout.rstrip("\n") == golden,
                            p.stdout[:200] + p.stderr[-200:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
