"""ggufw.py - writing GGUF files from Hugging Face checkpoints for the GGUF
tests, with the `gguf` package's GGUFWriter (pinned in
test/requirements.txt), the way llama.cpp's convert_hf_to_gguf.py lays them
out: its tensor names, its hyperparameter keys, the Q/K row permutation it
applies to llama-architecture models, and its tokenizer metadata (written
here from the HF tokenizer files, independently of dyn).
"""
import json
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, TokenType
from gguf.quants import quantize

ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
        "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}

LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight", "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name):
    fixed = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    assert parts[:2] == ["model", "layers"], name
    return f"blk.{parts[2]}." + LAYER[".".join(parts[3:])]


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute: within each head, HF's rotate-half
    row order becomes the interleaved one."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def read_safetensors(path):
    """name -> float32 array (F32, F16, BF16)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for k, v in header.items():
        b = raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(b, {"F32": np.float32, "F16": np.float16}[v["dtype"]])
        out[k] = a.astype(np.float32).reshape(v["shape"])
    return out


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: name -> float32 array, stored as dtype."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        if dtype == "BF16":
            b = to_bf16(a).tobytes()
        else:
            b = a.astype({"F32": np.float32, "F16": np.float16}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hparams(w, cfg, arch):
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        # the converter's rope_freqs tensor (LlamaModel.generate_extra_tensors)
        hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        base = cfg.get("rope_theta", 10000.0)
        freqs = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        out = []
        for f in freqs:
            wl = 2 * np.pi / f
            if wl < high_wl:
                out.append(1)
            elif wl > low_wl:
                out.append(factor)
            else:
                s = (old / wl - low) / (high - low)
                out.append(1 / ((1 - s) / factor + s))
        w.add_tensor("rope_freqs.weight", np.array(out, dtype=np.float32))


def add_matrix(w, name, a, fmt):
    """fmt: F32, F16, BF16, Q8_0 or Q4_0 (the quantized ones only where dyn's
    --quantize quantizes: projections whose rows are whole blocks, not the
    embedding)."""
    if fmt == "F32" or a.ndim == 1:
        w.add_tensor(name, a.astype(np.float32))
    elif fmt == "F16":
        w.add_tensor(name, a.astype(np.float16))
    elif fmt == "BF16":
        w.add_tensor(name, to_bf16(a), raw_dtype=QT.BF16)
    elif fmt in ("Q8_0", "Q4_0") and a.shape[1] % 32 == 0 and name != "token_embd.weight":
        w.add_tensor(name, quantize(a, QT[fmt]), raw_dtype=QT[fmt])
    else:
        w.add_tensor(name, a.astype(np.float32))


def write_model(path, cfg, tensors, fmt, tok=None, permuted=True):
    """A GGUF of the HF checkpoint tensors (name -> float32) with config cfg.
    tok: a callable adding tokenizer metadata to the writer, or None.
    permuted: apply the converter's Q/K permutation (llama only)."""
    arch = ARCH[cfg["architectures"][0]]
    w = gguf.GGUFWriter(path, arch)
    w.add_name("dyn test")
    hparams(w, cfg, arch)
    if tok:
        tok(w)
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    for name, a in tensors.items():
        if name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue
        if arch == "llama" and permuted:
            if name.endswith(("q_proj.weight", "q_proj.bias")):
                a = permute(a, nh)
            elif name.endswith(("k_proj.weight", "k_proj.bias")):
                a = permute(a, nkv)
        add_matrix(w, gguf_name(name), a, fmt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- tokenizer metadata, as the converter writes it -------------------------------

def spm_tokenizer(model_file, tok_config, cfg, scores=None):
    """llama.cpp's _set_vocab_sentencepiece: pieces, scores and types from
    tokenizer.model, the special ids and add_bos/eos from the HF files.
    scores="reversed": the scores negated (a wrong file, for tests)."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_file)
    # normalizer_spec.add_dummy_prefix, seen from outside (no protobuf needed)
    add_prefix = sp.encode_as_pieces("a")[0].startswith("\u2581")
    n = cfg["vocab_size"]
    how = scores
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(-sp.get_score(i) if how == "reversed" else sp.get_score(i))
        t = TokenType.NORMAL
        if sp.is_unknown(i):
            t = TokenType.UNKNOWN
        elif sp.is_control(i):
            t = TokenType.CONTROL
        elif sp.is_unused(i):
            t = TokenType.UNUSED
        elif sp.is_byte(i):
            t = TokenType.BYTE
        types.append(t)
    for i in range(len(tokens), n):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(TokenType.UNUSED)

    def add(w):
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_add_space_prefix(add_prefix)
        special(w, tok_config, cfg, lambda s: sp.piece_to_id(s))
    return add


def special(w, tok_config, cfg, to_id):
    for key, fn in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                    ("unk_token", w.add_unk_token_id), ("pad_token", w.add_pad_token_id)):
        v = tok_config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            fn(to_id(v))
    if "add_bos_token" in tok_config:
        w.add_add_bos_token(tok_config["add_bos_token"])
    if "add_eos_token" in tok_config:
        w.add_add_eos_token(tok_config["add_eos_token"])
    if tok_config.get("chat_template"):
        w.add_chat_template(tok_config["chat_template"])


def bpe_tokenizer(tokenizer_json, tok_config, cfg, pre):
    """llama.cpp's _set_vocab_gpt2: every id below vocab_size, added tokens
    CONTROL (special) or USER_DEFINED, holes [PADn] UNUSED; the merges;
    add_bos from the post-processor when tokenizer_config has none, as
    its SpecialVocab does."""
    with open(tokenizer_json, encoding="utf-8") as fh:
        tj = json.load(fh)
    vocab = dict(tj["model"]["vocab"])
    added = {t["content"]: t for t in tj["added_tokens"]}
    for t in tj["added_tokens"]:
        vocab[t["content"]] = t["id"]
    rev = {i: s for s, i in vocab.items()}
    n = max(cfg["vocab_size"], max(rev) + 1)
    tokens, types = [], []
    for i in range(n):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif rev[i] in added:
            tokens.append(rev[i])
            types.append(TokenType.CONTROL if added[rev[i]]["special"] else TokenType.USER_DEFINED)
        else:
            tokens.append(rev[i])
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    tc = dict(tok_config)
    if "add_bos_token" not in tc:
        pp = json.dumps(tj.get("post_processor"))
        tc["add_bos_token"] = "TemplateProcessing" in pp and '"SpecialToken"' in pp

    def add(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        special(w, tc, cfg, lambda s: vocab[s])
    return add
