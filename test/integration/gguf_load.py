"""gguf_load.py - GGUF checkpoints give what the same weights give as
safetensors.

GGUF files are written with the `gguf` package (pinned in
test/requirements.txt) the way llama.cpp's converter writes them
(pylib/ggufw.py: its tensor names and hyperparameter keys, the Q/K row
permutation of llama models, rope_freqs for Llama 3 RoPE scaling, the
tokenizer metadata from tokenizer.model / tokenizer.json).  For each, dyn's
greedy text and every token's logprob with its top alternatives must equal,
byte for byte, those of the same weights as safetensors in the same dtype
(F32, F16 and BF16 are computed with as stored either way, so they are the
same numbers), and a Q8_0 GGUF those of the F32 safetensors loaded with
--quantize q8_0 (whose blocks equal gguf's: quant_q8.py):

  - stories260K (real weights; llama, GQA, tied): F32, F16, BF16, Q8_0,
    tokenizer from the GGUF metadata (no tokenizer.json beside it); the
    F32 GGUF also decodes the 200-token golden from BOS;
  - tiny random llama (q/k biases, Llama 3 RoPE scaling), qwen2 (q/k/v
    biases, tied) and qwen3 (q/k norms, head_dim != hidden/heads) models,
    with stories' tokenizer.json beside the GGUF (which is then used);
  - the permutation is what makes llama files right: the same stories
    GGUF written without it decodes differently;
  - `dyn model info --json` tells the same as for the safetensors.
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

TOP = d.TOP
report, dyn = d.check, d.run_offline
STORIES = os.path.normpath(os.path.join(TOP, "..", "shared", "models", "stories260K"))

try:
    import numpy as np
    import ggufw
    import sentencepiece  # noqa: F401  (the converter reads tokenizer.model with it)
except ImportError as e:
    d.skip("gguf oracle", f"not installed ({e}; test/requirements.txt)")
    d.finish()

TOKFILES = ("tokenizer.json", "tokenizer_config.json")


def run(model, *extra, prompt="Once upon a time", n=24):
    p = dyn("run", model, "--raw", "--prompt", prompt, "--temperature", "0", "--max-tokens",
            str(n), "--threads", "2", "--logprobs", "3", *extra)
    lp = [ln for ln in p.stderr.splitlines() if ln.startswith("logprob ")]
    return p.returncode, p.stdout, lp, p.stderr


def same(name, a, b):
    rc_a, out_a, lp_a, err_a = a
    rc_b, out_b, lp_b, err_b = b
    ok = rc_a == 0 and rc_b == 0 and out_a == out_b and lp_a == lp_b and len(lp_a) > 5
    report(name, ok, f"rc {rc_a}/{rc_b} {err_a.strip()[-300:]!r} {err_b.strip()[-300:]!r}; "
           f"{out_a[:60]!r} vs {out_b[:60]!r}")
    return ok


def rounded(tensors, fmt):
    """The values fmt stores (GGUF keeps 1-D tensors in F32: give them the
    values the safetensors hold, so that both files hold the same numbers)."""
    if fmt == "F16":
        return {k: a.astype(np.float16).astype(np.float32) for k, a in tensors.items()}
    if fmt == "BF16":
        return {k: (ggufw.to_bf16(a).astype(np.uint32) << 16).view(np.float32)
                for k, a in tensors.items()}
    return tensors


def safetensors_dir(path, cfg, tensors, dtype, tok_from=STORIES):
    os.makedirs(path)
    c = dict(cfg, torch_dtype={"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype])
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(c, fh)
    for f in TOKFILES:
        shutil.copy(os.path.join(tok_from, f), path)
    ggufw.write_safetensors(os.path.join(path, "model.safetensors"), tensors, dtype)
    return path


def gguf_file(path, cfg, tensors, fmt, tok=None, beside=False, permuted=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ggufw.write_model(path, cfg, tensors, fmt, tok, permuted)
    if beside:
        for f in TOKFILES:
            shutil.copy(os.path.join(STORIES, f), os.path.dirname(path))
    return path


def check_stories(tmp):
    with open(os.path.join(STORIES, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(STORIES, "tokenizer_config.json")) as fh:
        tc = json.load(fh)
    tensors = ggufw.read_safetensors(os.path.join(STORIES, "model.safetensors"))
    tok = ggufw.spm_tokenizer(os.path.join(STORIES, "tok512.model"), tc, cfg)
    files = {}
    for fmt in ("F32", "F16", "BF16", "Q8_0", "Q4_0"):
        g = gguf_file(os.path.join(tmp, "s-" + fmt, "stories.gguf"), cfg,
                      rounded(tensors, fmt), fmt, tok)
        files[fmt] = g
        if fmt in ("Q8_0", "Q4_0"):
            ref = run(STORIES, "--quantize", fmt.lower())
        elif fmt == "F32":
            ref = run(STORIES)
        else:
            st = safetensors_dir(os.path.join(tmp, "st-" + fmt), cfg, tensors, fmt)
            ref = run(st)
        same(f"stories260K {fmt} GGUF decodes as the {fmt} safetensors"
             f"{' with --quantize ' + fmt.lower() if fmt.startswith('Q') else ''}", run(g), ref)
    # a folder holding one .gguf is that model
    same("a folder with one .gguf is the model", run(os.path.dirname(files["F32"])), run(STORIES))
    with open(os.path.join(STORIES, "expected_greedy_from_bos.txt")) as fh:
        golden = fh.read()
    rc, out, _, err = run(files["F32"], prompt="", n=200)
    report("stories260K F32 GGUF decodes the 200-token golden from BOS",
           rc == 0 and out.rstrip("\n") == golden.rstrip("\n"), f"rc {rc} {err[-200:]!r} got {out[:80]!r}")
    raw = gguf_file(os.path.join(tmp, "s-unpermuted", "stories.gguf"), cfg, tensors, "F32", tok,
                    permuted=False)
    a, b = run(raw), run(STORIES)
    report("without the converter's Q/K permutation the llama GGUF decodes differently",
           a[0] == 0 and (a[1], a[2]) != (b[1], b[2]), a[3][-200:])
    check_serve(files["F32"], golden)
    check_info(files["F32"], STORIES, "stories260K F32")
    check_info(files["Q8_0"], STORIES, "stories260K Q8_0", "--quantize", "q8_0")
    check_info(files["Q4_0"], STORIES, "stories260K Q4_0", "--quantize", "q4_0")


def check_serve(path, golden):
    """dyn serve --model X.gguf behind a frontend: its card carries the
    tokenizer and chat template made from the metadata."""
    name = os.path.basename(path)
    w = d.Proc(["serve", "--model", path, "--threads", "2", "--system-port", "0"],
               r"instance ([0-9a-f]{16}) .*chat template: (\w+)", timeout=60)
    f = d.frontend()

    def listed():
        st, body = d.http_get(f.url + "/v1/models")
        return st == 200 and [m["id"] for m in json.loads(body)["data"]] == [name]
    ok = d.wait_until(listed, timeout=30)
    report("dyn serve --model X.gguf: the frontend lists it by its file name, with a chat "
           "template", ok and w.m.group(2) == "yes", w.line + w.stderr())
    st, r = d.post_json(f.url + "/v1/completions", {"model": name, "prompt": "", "max_tokens": 200,
                                                    "temperature": 0})
    report("dyn serve --model X.gguf: greedy completion from BOS is the golden",
           st == 200 and r["choices"][0]["text"].rstrip("\n") == golden.rstrip("\n"), str(r)[:300])
    st, r = d.post_json(f.url + "/v1/chat/completions",
                        {"model": name, "max_tokens": 10, "temperature": 0,
                         "messages": [{"role": "user", "content": "Once upon a time"}]})
    report("dyn serve --model X.gguf: chat through the metadata's template",
           st == 200 and r["usage"]["prompt_tokens"] > 4 and r["choices"][0]["message"]["content"],
           str(r)[:300])
    f.stop()
    report("dyn serve stops on SIGTERM", w.stop() == 0, w.stderr())


INFO_SAME = ("architecture", "model_type", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
             "vocab_size", "max_position_embeddings", "rope_theta", "rope_scaling", "rms_norm_eps",
             "tie_word_embeddings", "qkv_bias", "o_bias", "qk_norm", "parameters",
             "weight_bytes", "weights_dtype", "bos_token_id", "eos_token_ids", "tokenizer",
             "chat_template")


def check_info(gguf, ref, name, *ref_extra):
    a = dyn("model", "info", "--json", "--tensors", gguf)
    b = dyn("model", "info", "--json", "--tensors", ref, *ref_extra)
    if a.returncode or b.returncode:
        report(f"{name}: model info", False, a.stderr.strip() + b.stderr.strip())
        return
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    diff = [k for k in INFO_SAME if ja.get(k) != jb.get(k)]
    ta = {t["name"]: (t["dtype"], t["shape"]) for t in ja["tensors"]}
    tb = {t["name"]: (t["dtype"], t["shape"]) for t in jb["tensors"]}
    report(f"{name}: model info of the GGUF tells what it tells of the safetensors",
           not diff and ta == tb and ja["load_format"] == "gguf" and ja["path"] == gguf,
           f"differ: {[(k, ja.get(k), jb.get(k)) for k in diff]}; "
           f"tensors equal {ta == tb}; {ja['load_format']} {ja['path']}")


TINY = {
    "llama": {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "attention_bias": True,
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192},
              "rope_theta": 500000.0, "tie_word_embeddings": False},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
              "rope_theta": 1000000.0, "tie_word_embeddings": True},
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 32,
              "rope_theta": 1000000.0, "tie_word_embeddings": False},
}
BASE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 512,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2}


def tiny_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    arch = cfg["model_type"]
    bias = arch == "qwen2" or cfg.get("attention_bias")

    def m(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    def norm(n):
        return (1 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    t = {"model.embed_tokens.weight": m(v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(h)
        for nm, rows in (("q", q), ("k", kv), ("v", kv)):
            t[p + f"self_attn.{nm}_proj.weight"] = m(rows, h)
            if bias:
                t[p + f"self_attn.{nm}_proj.bias"] = (0.5 * rng.standard_normal(rows)).astype(np.float32)
        t[p + "self_attn.o_proj.weight"] = m(h, q)
        if cfg.get("attention_bias"):
            t[p + "self_attn.o_proj.bias"] = (0.5 * rng.standard_normal(h)).astype(np.float32)
        if arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = norm(hd)
            t[p + "self_attn.k_norm.weight"] = norm(hd)
        t[p + "post_attention_layernorm.weight"] = norm(h)
        t[p + "mlp.gate_proj.weight"] = m(ff, h)
        t[p + "mlp.up_proj.weight"] = m(ff, h)
        t[p + "mlp.down_proj.weight"] = m(h, ff)
    t["model.norm.weight"] = norm(h)
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = m(v, h)
    return t


def special_ids(w):
    """The converter always writes these, whatever tokenizer it finds."""
    w.add_bos_token_id(BASE["bos_token_id"])
    w.add_eos_token_id(BASE["eos_token_id"])


def check_tiny(tmp):
    for i, (arch, extra) in enumerate(TINY.items()):
        cfg = dict(BASE, **extra)
        for fmt in ("F32", "BF16"):
            tensors = rounded(tiny_weights(cfg, 100 + i), fmt)
            st = safetensors_dir(os.path.join(tmp, f"{arch}-st-{fmt}"), cfg, tensors, fmt)
            g = gguf_file(os.path.join(tmp, f"{arch}-gguf-{fmt}", "m.gguf"), cfg, tensors, fmt,
                          tok=special_ids, beside=True)
            same(f"tiny {arch} {fmt} GGUF (tokenizer.json beside it) decodes as the safetensors",
                 run(g, prompt="One day a cat"), run(st, prompt="One day a cat"))
            if fmt == "F32":
                check_info(g, st, f"tiny {arch}")


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-gguf-load-")
    os.environ["TMPDIR"] = tmp  # the folders dyn makes for GGUFs: must all be gone
    try:
        check_stories(tmp)
        check_tiny(tmp)
        left = [f for f in os.listdir(tmp) if f.startswith("dyn-gguf-")]
        report("dyn removes the folders it makes for GGUF files", not left, str(left))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
