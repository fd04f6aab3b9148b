#!/usr/bin/env python3
"""gguf_write.py - a GGUF file with random weights of a model's shape, for
the llama.cpp baseline in 'make bench' (test/bench/engine.sh).

    gguf_write.py MODEL_DIR OUT.gguf [f32|f16|bf16|q8_0|q4_0]

Reads MODEL_DIR/config.json (Llama or Qwen3 architecture), writes every
tensor llama.cpp's loader expects for that architecture with random values
(fixed seed) in the given precision (norm weights stay F32, as llama.cpp's
own converter writes them; with q8_0 and q4_0 the projections are
quantized by gguf.quants and the embedding, so a tied output, stays F16,
as dyn --quantize keeps it 16-bit), and a placeholder vocabulary ("none" tokenizer
model with the config's vocab size): llama-bench feeds random token ids and
never tokenizes.  Tensors are streamed to the file one at a time, so memory
stays at one tensor.  Uses the gguf package (pinned in
test/bench/llamacpp-requirements.txt).
"""
import json
import sys

import numpy as np
import gguf


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: gguf_write.py MODEL_DIR OUT.gguf [f32|f16|bf16|q8_0|q4_0]")
    with open(sys.argv[1] + "/config.json") as f:
        cfg = json.load(f)
    out = sys.argv[2]
    Q, F = gguf.GGMLQuantizationType, gguf.LlamaFileType
    # name -> (type of the projections, of the embedding, file type)
    types = {"f32": (Q.F32, Q.F32, F.ALL_F32), "f16": (Q.F16, Q.F16, F.MOSTLY_F16),
             "bf16": (Q.BF16, Q.BF16, F.MOSTLY_BF16), "q8_0": (Q.Q8_0, Q.F16, F.MOSTLY_Q8_0),
             "q4_0": (Q.Q4_0, Q.F16, F.MOSTLY_Q4_0)}
    name = sys.argv[3] if len(sys.argv) > 3 else "f32"
    if name not in types:
        sys.exit(f"gguf_write: unknown type {name}")
    wtype, etype, ftype = types[name]
    mt = cfg.get("model_type", "llama")
    arch = {"llama": "llama", "mistral": "llama", "qwen3": "qwen3", "qwen2": "qwen2"}.get(mt)
    if arch is None:
        sys.exit(f"gguf_write: unsupported model_type {mt}")
    hidden = cfg["hidden_size"]
    ff = cfg["intermediate_size"]
    n_layers = cfg["num_hidden_layers"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    hd = cfg.get("head_dim") or hidden // n_heads
    vocab = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", False)

    w = gguf.GGUFWriter(out, arch)
    w.add_name(sys.argv[1].rstrip("/").split("/")[-1])
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(vocab)
    w.add_file_type(ftype)
    w.add_tokenizer_model("none")

    # (name, numpy shape [out, in], is_norm)
    tensors = [("token_embd.weight", (vocab, hidden), False)]
    for i in range(n_layers):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (hidden,), True),
            (p + "attn_q.weight", (n_heads * hd, hidden), False),
            (p + "attn_k.weight", (n_kv * hd, hidden), False),
            (p + "attn_v.weight", (n_kv * hd, hidden), False),
            (p + "attn_output.weight", (hidden, n_heads * hd), False),
            (p + "ffn_norm.weight", (hidden,), True),
            (p + "ffn_gate.weight", (ff, hidden), False),
            (p + "ffn_up.weight", (ff, hidden), False),
            (p + "ffn_down.weight", (hidden, ff), False),
        ]
        if arch == "qwen3":
            tensors += [(p + "attn_q_norm.weight", (hd,), True),
                        (p + "attn_k_norm.weight", (hd,), True)]
        if arch == "qwen2" or cfg.get("attention_bias"):
            tensors += [(p + "attn_q.bias", (n_heads * hd,), True),
                        (p + "attn_k.bias", (n_kv * hd,), True),
                        (p + "attn_v.bias", (n_kv * hd,), True)]
    tensors.append(("output_norm.weight", (hidden,), True))
    if not tied:
        tensors.append(("output.weight", (vocab, hidden), False))

    def qtype(name, norm):
        return Q.F32 if norm else etype if name == "token_embd.weight" else wtype

    for name, shape, norm in tensors:
        bshape = gguf.quant_shape_to_byte_shape(shape, qtype(name, norm))
        w.add_tensor_info(name, bshape, np.dtype(np.uint8), int(np.prod(bshape)),
                          raw_dtype=qtype(name, norm))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(1234)
    for name, shape, norm in tensors:
        if norm:
            t = np.ones(shape, dtype=np.float32)
        else:
            t = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        w.write_tensor_data(gguf.quants.quantize(t, qtype(name, norm)).view(np.uint8))
    w.close()


if __name__ == "__main__":
    main()
