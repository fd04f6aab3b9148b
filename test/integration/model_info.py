"""model_info.py - `dyn model info` on real and synthetic models, checked
against an independent Python reading of the same files: shapes and
parameter counts computed from config.json here, tensor bytes hashed
straight from the safetensors file; dummy weights for every *-shape
config; and corrupt checkpoints, each of which must give one clear error
line and exit status 1 (never a crash).
"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc  # noqa: E402

TOP, DYN = dynproc.TOP, dynproc.DYN
report, dyn = dynproc.check, dynproc.run_offline
MODELS = os.path.normpath(os.path.join(TOP, "..", "shared", "models"))
NAME = "model_info"


def read_safetensors(path):
    """An independent reader: (header dict, data section start, file bytes)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return header, 8 + n, raw


def expected_params(cfg):
    """Parameter count of a Llama/Mistral/Qwen2/Qwen3 checkpoint, from the
    transformers modelling code's layer definitions."""
    h, v, ff, L = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"], \
        cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim") or h // heads
    arch = cfg["architectures"][0]
    q, kv = heads * hd, kvh * hd
    layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * ff
    if arch == "Qwen2ForCausalLM":
        layer += q + 2 * kv
    elif cfg.get("attention_bias"):
        layer += q + 2 * kv + h
    if arch == "Qwen3ForCausalLM":
        layer += 2 * hd
    total = v * h + L * layer + h
    if not cfg.get("tie_word_embeddings", False):
        total += v * h
    return total


def info(path, *extra):
    r = dyn("model", "info", "--json", *extra, path)
    if r.returncode != 0:
        return None, r
    return json.loads(r.stdout), r


# 1. stories260K, real weights.
st = os.path.join(MODELS, "stories260K")
cfg = json.load(open(os.path.join(st, "config.json")))
d, r = info(st, "--tensors")
if d is None:
    report("stories260K loads", False, r.stderr)
else:
    header, start, raw = read_safetensors(os.path.join(st, "model.safetensors"))
    shapes_ok = all(d[k] == cfg[k] for k in ("hidden_size", "num_hidden_layers",
                                             "num_attention_heads", "num_key_value_heads",
                                             "intermediate_size", "vocab_size",
                                             "max_position_embeddings", "head_dim"))
    report("stories260K: shapes match config.json", shapes_ok and
           d["architecture"] == "LlamaForCausalLM" and d["tie_word_embeddings"] is True and
           d["rope_theta"] == cfg["rope_theta"] and d["rms_norm_eps"] == cfg["rms_norm_eps"],
           json.dumps(d)[:300])
    numel = sum(eval("*".join(map(str, t["shape"])) or "1") for t in header.values())
    report("stories260K: parameter count from config and from the file",
           d["parameters"] == expected_params(cfg) == numel == 260032,
           f"dyn {d['parameters']} config {expected_params(cfg)} file {numel}")
    report("stories260K: weight bytes, dtype, files",
           d["weight_bytes"] == 260032 * 4 and d["weights_dtype"] == "F32" and
           d["files"] == 1 and d["load_format"] == "safetensors", json.dumps(d)[:300])
    report("stories260K: tokenizer and chat template found",
           d["tokenizer"] is True and d["chat_template"] is True and
           d["bos_token_id"] == 1 and d["eos_token_ids"] == [2], json.dumps(d)[:300])
    bad = []
    seen = {t["name"] for t in d["tensors"]}
    if seen != set(header):
        bad.append(f"tensor sets differ: {sorted(seen ^ set(header))}")
    for t in d["tensors"]:
        h = header.get(t["name"])
        if not h:
            continue
        b, e = h["data_offsets"]
        if t["dtype"] != h["dtype"] or t["shape"] != h["shape"] or t["bytes"] != e - b:
            bad.append(f"{t['name']}: {t['dtype']} {t['shape']} vs {h['dtype']} {h['shape']}")
        if t["sha256"] != hashlib.sha256(raw[start + b:start + e]).hexdigest():
            bad.append(f"{t['name']}: bytes differ")
    report("stories260K: every tensor's bytes equal the file's", not bad, "; ".join(bad[:5]))

r = dyn("model", "info", st)
report("text output", r.returncode == 0 and "LlamaForCausalLM" in r.stdout and
       "260,032" in r.stdout and "tied" in r.stdout and "512 tokens" in r.stdout, r.stdout)

# 2. Every *-shape config with dummy weights.
for shape_dir in sorted(x for x in os.listdir(MODELS) if x.endswith("-shape")):
    path = os.path.join(MODELS, shape_dir)
    cfg = json.load(open(os.path.join(path, "config.json")))
    d, r = info(path, "--load-format", "dummy")
    if d is None:
        report(f"{shape_dir}: dummy load", False, r.stderr)
        continue
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    eos = cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]]
    tc = os.path.join(path, "tokenizer_config.json")
    has_tmpl = os.path.exists(tc) and bool(json.load(open(tc)).get("chat_template"))
    ok = (d["parameters"] == expected_params(cfg) and
          d["weight_bytes"] == 4 * expected_params(cfg) and
          all(d[k] == cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                       "intermediate_size", "vocab_size")) and
          d["tie_word_embeddings"] == cfg.get("tie_word_embeddings", False) and
          d["head_dim"] == hd and d["architecture"] == cfg["architectures"][0] and
          d["num_key_value_heads"] == cfg["num_key_value_heads"] and
          d["max_position_embeddings"] == cfg["max_position_embeddings"] and
          d["eos_token_ids"] == eos and d["load_format"] == "dummy" and
          d["tokenizer"] == os.path.exists(os.path.join(path, "tokenizer.json")) and
          d["chat_template"] == has_tmpl and
          d["qk_norm"] == (cfg["architectures"][0] == "Qwen3ForCausalLM") and
          d["qkv_bias"] == (cfg["architectures"][0] == "Qwen2ForCausalLM"))
    rs = cfg.get("rope_scaling")
    if rs:
        ok = ok and d["rope_scaling"] == {"rope_type": rs["rope_type"], "factor": rs["factor"],
                                          "low_freq_factor": rs["low_freq_factor"],
                                          "high_freq_factor": rs["high_freq_factor"],
                                          "original_max_position_embeddings":
                                              rs["original_max_position_embeddings"]}
    report(f"{shape_dir}: dummy shapes and {expected_params(cfg):,} parameters", ok,
           json.dumps(d)[:400])

# Dummy weights are generated (not just described), deterministically.
a, _ = info(os.path.join(MODELS, "smollm2-135m-shape"), "--load-format", "dummy", "--tensors")
b, _ = info(os.path.join(MODELS, "smollm2-135m-shape"), "--load-format", "dummy", "--tensors")
c, _ = info(os.path.join(MODELS, "smollm2-135m-shape"), "--load-format", "dummy", "--tensors",
            "--seed", "7")
ok = a and b and c
if ok:
    sa = {t["name"]: t["sha256"] for t in a["tensors"]}
    sc = {t["name"]: t["sha256"] for t in c["tensors"]}
    norm = "model.layers.0.input_layernorm.weight"
    ones = hashlib.sha256(struct.pack("<576f", *[1.0] * 576)).hexdigest()
    ok = (sa == {t["name"]: t["sha256"] for t in b["tensors"]} and
          sa["model.embed_tokens.weight"] != sc["model.embed_tokens.weight"] and
          sa[norm] == sc[norm] == ones and len(sa) == 2 + 30 * 9)
report("dummy weights: deterministic per seed, norms are ones", bool(ok), "")

# 3. Synthetic checkpoints written here with struct/json: a BF16 Qwen3 and
#    an F16 Qwen2 (biases), sharded.
TMP = tempfile.mkdtemp(prefix="dyn-info.")


def f32_to_bf16_bits(x):
    (u,) = struct.unpack("<I", struct.pack("<f", x))
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16


def tensor_bytes(dtype, n, k):
    vals = [((i * 7 + k * 13) % 251 - 125) / 64.0 for i in range(n)]
    if dtype == "F32":
        return struct.pack(f"<{n}f", *vals)
    if dtype == "F16":
        return struct.pack(f"<{n}e", *vals)
    return struct.pack(f"<{n}H", *[f32_to_bf16_bits(v) for v in vals])


def hf_names(cfg):
    h, v, ff = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    arch = cfg["architectures"][0]
    out = [("model.embed_tokens.weight", [v, h])]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [h]),
                (p + "self_attn.q_proj.weight", [q, h]), (p + "self_attn.k_proj.weight", [kv, h]),
                (p + "self_attn.v_proj.weight", [kv, h]), (p + "self_attn.o_proj.weight", [h, q])]
        if arch == "Qwen2ForCausalLM":
            out += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]),
                    (p + "self_attn.v_proj.bias", [kv])]
        if arch == "Qwen3ForCausalLM":
            out += [(p + "self_attn.q_norm.weight", [hd]), (p + "self_attn.k_norm.weight", [hd])]
        out += [(p + "post_attention_layernorm.weight", [h]),
                (p + "mlp.gate_proj.weight", [ff, h]), (p + "mlp.up_proj.weight", [ff, h]),
                (p + "mlp.down_proj.weight", [h, ff])]
    out.append(("model.norm.weight", [h]))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", [v, h]))
    return out


def write_st(path, tensors, dtype, header_patch=None, data_patch=None, pad=True, drop=()):
    """tensors: [(name, shape)], less those named in drop; returns {name: bytes}."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    contents = {}
    for k, (name, shape) in enumerate(tensors):
        if name in drop:
            continue
        n = 1
        for s in shape:
            n *= s
        b = tensor_bytes(dtype, n, k)
        contents[name] = b
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if header_patch:
        header_patch(header)
    text = json.dumps(header).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    data = struct.pack("<Q", len(text)) + text + b"".join(blobs)
    if data_patch:
        data = data_patch(data)
    with open(path, "wb") as fh:
        fh.write(data)
    return contents


def make_model(name, cfg, dtype="F32", **kw):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    return d, write_st(os.path.join(d, "model.safetensors"), hf_names(cfg), dtype, **kw)


QWEN3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "intermediate_size": 40, "vocab_size": 60,
         "max_position_embeddings": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
         "tie_word_embeddings": True, "torch_dtype": "bfloat16", "eos_token_id": 5}
QWEN2 = dict(QWEN3, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
             tie_word_embeddings=False, torch_dtype="float16")
del QWEN2["head_dim"]
LLAMA = dict(QWEN3, architectures=["LlamaForCausalLM"], model_type="llama", head_dim=8,
             tie_word_embeddings=False, torch_dtype="float32")

for label, cfg, dtype in (("Qwen3 BF16", QWEN3, "BF16"), ("Qwen2 F16", QWEN2, "F16"),
                          ("Llama F32", LLAMA, "F32")):
    path, contents = make_model(label.replace(" ", "-"), cfg, dtype)
    d, r = info(path, "--tensors")
    if d is None:
        report(f"{label}: loads", False, r.stderr)
        continue
    bad = [t["name"] for t in d["tensors"]
           if t["sha256"] != hashlib.sha256(contents[t["name"]]).hexdigest() or
           t["dtype"] != dtype]
    report(f"{label}: parameters, dtype and tensor bytes",
           not bad and d["parameters"] == expected_params(cfg) and
           {t["name"] for t in d["tensors"]} == set(contents) and d["weights_dtype"] == dtype,
           f"bad {bad[:3]} params {d['parameters']} vs {expected_params(cfg)}")

# Sharded: the Qwen2 model split in two with an index.
path = os.path.join(TMP, "sharded")
os.makedirs(path)
json.dump(QWEN2, open(os.path.join(path, "config.json"), "w"))
names = hf_names(QWEN2)
half = len(names) // 2
c1 = write_st(os.path.join(path, "model-00001-of-00002.safetensors"), names[:half], "F16")
c2 = write_st(os.path.join(path, "model-00002-of-00002.safetensors"), names[half:], "F16")
wm = {n: "model-00001-of-00002.safetensors" for n in c1}
wm.update({n: "model-00002-of-00002.safetensors" for n in c2})
json.dump({"metadata": {}, "weight_map": wm},
          open(os.path.join(path, "model.safetensors.index.json"), "w"))
d, r = info(path, "--tensors")
report("sharded checkpoint with an index", d is not None and d["files"] == 2 and
       d["parameters"] == expected_params(QWEN2), r.stderr)

# 4. Corrupt checkpoints: exit 1, one line naming the problem, no crash.


def corrupt(label, want, cfg=LLAMA, **kw):
    path, _ = make_model("bad-" + label.replace(" ", "-"), cfg, **kw)
    r = dyn("model", "info", "--tensors", path)
    lines = r.stderr.strip().splitlines()
    report(f"corrupt: {label}", r.returncode == 1 and len(lines) == 1 and want in r.stderr and
           "dyn model info:" in r.stderr,
           f"rc={r.returncode} stderr={r.stderr.strip()[-300:]!r} (wanted {want!r})")


def set_offsets(name, b, e):
    def patch(h):
        h[name]["data_offsets"] = [b, e]
    return patch


corrupt("truncated file", "out of range", data_patch=lambda d: d[:len(d) - 100])
corrupt("truncated inside the header", "past the end", data_patch=lambda d: d[:40])
corrupt("header length past EOF", "runs past the end",
        data_patch=lambda d: struct.pack("<Q", len(d)) + d[8:])
corrupt("absurd header length", "limit",
        data_patch=lambda d: struct.pack("<Q", 1 << 62) + d[8:])
corrupt("empty file", "too short", data_patch=lambda d: b"")
corrupt("overlapping offsets", "overlap", header_patch=lambda h: h.__setitem__(
    "model.layers.0.self_attn.k_proj.weight",
    dict(h["model.layers.0.self_attn.k_proj.weight"],
         data_offsets=[h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"][0] + 4,
                       h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"][0] + 4 +
                       4 * 16 * 32])))
corrupt("offsets out of range", "out of range",
        header_patch=set_offsets("model.norm.weight", 10 ** 9, 10 ** 9 + 128))
corrupt("offsets disagree with the shape", "need 128 bytes",
        header_patch=set_offsets("model.norm.weight", 0, 64))
corrupt("wrong dtype", "dtype I32", header_patch=lambda h: h["model.norm.weight"].update(
    dtype="I32"))
corrupt("unknown dtype", "unknown dtype", header_patch=lambda h: h["model.norm.weight"].update(
    dtype="Q4_K"))
# k_proj is [kv_heads * head_dim, hidden] = [16, 32]: transposed, same bytes.
corrupt("wrong shape", "has shape [32, 16], but config.json implies [16, 32]",
        header_patch=lambda h: h["model.layers.1.self_attn.k_proj.weight"].update(
            shape=[32, 16]))
corrupt("missing tensor", "model.layers.1.mlp.up_proj.weight is missing",
        drop=("model.layers.1.mlp.up_proj.weight",))
# Bytes that belong to no tensor (the reference parser refuses them too).
corrupt("100 trailing bytes", "100 trailing bytes after the last tensor",
        data_patch=lambda d: d + bytes(100))
corrupt("a gap between tensors", "unused bytes in the data section between tensors",
        header_patch=lambda h: h.pop("model.layers.1.mlp.up_proj.weight"))
corrupt("invalid JSON header", "not valid JSON",
        data_patch=lambda d: d[:20] + b"\x00{{" + d[23:])
corrupt("header not an object", "not a JSON object",
        data_patch=lambda d: struct.pack("<Q", 8) + b"[1,2,3] " + d[8 + struct.unpack(
            "<Q", d[:8])[0]:])

# stories260K with 100 zero bytes appended to its weights: refused, the
# message naming the file and the count.
path = os.path.join(TMP, "stories260K-trailing")
shutil.copytree(st, path)
with open(os.path.join(path, "model.safetensors"), "ab") as fh:
    fh.write(bytes(100))
r = dyn("model", "info", path)
report("corrupt: stories260K + 100 trailing bytes",
       r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and
       "model.safetensors" in r.stderr and "100 trailing bytes" in r.stderr,
       f"rc={r.returncode} {r.stderr.strip()[-300:]!r}")

path, _ = make_model("bad-config", LLAMA)
with open(os.path.join(path, "config.json"), "w") as fh:
    fh.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": ')
r = dyn("model", "info", path)
report("corrupt: invalid config.json", r.returncode == 1 and "config.json" in r.stderr and
       "not valid JSON" in r.stderr, r.stderr)
with open(os.path.join(path, "config.json"), "w") as fh:
    json.dump(dict(LLAMA, architectures=["GPTNeoXForCausalLM"]), fh)
r = dyn("model", "info", path)
report("unsupported architecture is named", r.returncode == 1 and
       "GPTNeoXForCausalLM is not supported" in r.stderr, r.stderr)

# 5. Usage errors.
r = dyn("model", "info")
report("info without MODEL: exit 2", r.returncode == 2 and "MODEL" in r.stderr, r.stderr)
r = dyn("model", "inof", st)
report("unknown verb: exit 2 with a suggestion", r.returncode == 2 and "info" in r.stderr,
       r.stderr)
r = dyn("model", "info", "--load-format", "pickle", st)
report("bad --load-format: exit 2", r.returncode == 2 and "dummy" in r.stderr, r.stderr)
r = dyn("model", "info", os.path.join(TMP, "nowhere"))
report("missing path: exit 1, clear", r.returncode == 1 and "nowhere" in r.stderr and
       "not found" in r.stderr, r.stderr)
r = dyn("model", "info", os.path.join(MODELS, "qwen3-0.6b-shape"))
report("no weights: suggests --load-format dummy", r.returncode == 1 and
       "--load-format dummy" in r.stderr, r.stderr)

shutil.rmtree(TMP, ignore_errors=True)
dynproc.finish()
