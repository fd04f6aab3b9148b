"""quant.py - --quantize q8_0 and q4_0 against GGUF's own quantizer (the
gguf package, gguf.quants.quantize(..., Q8_0 / Q4_0), pinned in
test/requirements.txt), each format checked the same way:

  - bytes: tiny F32, BF16 and F16 checkpoints with random rows of every
    magnitude and edge-case blocks (all zeros, huge values whose F16 scale
    overflows to inf, tiny ones whose scale flushes to zero or is
    subnormal, exact halfway cases) are loaded by `dyn model info
    --quantize q8_0 --tensors --json`, which hashes every tensor as
    loaded: each quantized projection must hash as gguf's blocks of the
    same values, and the tensors that stay as stored (the embedding,
    norms, a down_proj whose 80 columns are not whole blocks) as the
    checkpoint's bytes.  The rounding rules are GGML's (Q8_0: roundf,
    halfway cases away from zero; Q4_0: trunc(x / d + 8.5), halfway cases
    up), not to nearest even: the halfway rows are checked to tell them
    apart, so a quantizer rounding to even fails here.  Q4_0's scale
    comes from the first value of largest magnitude, with its sign: rows
    with +m before -m and the reverse tell it from max|x|.
  - engine: `dyn run --quantize TYPE` on stories260K against transformers
    (pinned, CPU, float32) computing the same quantized math: the
    quantized projections hold gguf's dequantized weights (d * q, exact in
    F32) and their inputs are quantized as the CPU kernels quantize them
    (kernels.h, written here in torch: per 32-element block d = max|x| /
    127, q = x * (127 / max|x|) rounded half to even; llama.cpp does the
    same with Q8_0 activations): short greedy runs from PROMPTS, a
    majority of them with every logprob within EXACT_TOL of the
    reference's (see PROMPTS for why not all), dyn's tokens its argmax.
    Without the activations' quantization in the reference no run matches
    (logprobs up to 0.23 off for q8_0, 0.32 for q4_0).
"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

TOP, DYN = d.TOP, d.DYN
report, dyn = d.check, d.run_offline
MODELS = os.path.normpath(os.path.join(TOP, "..", "shared", "models"))
NAME = "quant"

try:
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize
except ImportError as e:
    d.skip("gguf oracle", f"not installed ({e}; test/requirements.txt)")
    d.finish()
os.environ["HF_HUB_OFFLINE"] = "1"
try:
    import torch
    import transformers
except ImportError as e:
    d.skip("transformers oracle", f"not installed ({e}; test/requirements.txt)")
    d.finish()
torch.set_num_threads(1)

Q8_0, Q4_0 = GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0
np.seterr(over="ignore")  # the huge blocks' scales overflow F16 on purpose


NP_DTYPE = {"F32": np.float32, "F16": np.float16}


def to_bytes(a, dt):
    """The checkpoint bytes of F32 values a as dtype dt (BF16: rounded to
    nearest even, by hand: numpy has no bfloat16)."""
    if dt in NP_DTYPE:
        return a.astype(NP_DTYPE[dt]).tobytes()
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


def from_bytes(b, dt, shape):
    if dt in NP_DTYPE:
        return np.frombuffer(b, dtype=NP_DTYPE[dt]).astype(np.float32).reshape(shape)
    u = np.frombuffer(b, dtype=np.uint16).astype(np.uint32) << 16
    return u.view(np.float32).reshape(shape)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, bytes)."""
    header, blobs, off = {}, [], 0
    for name, (dt, shape, b) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}


# hidden 64, one layer, 2 heads of 32 (1 KV head), intermediate 80 (so
# down_proj [64, 80] is kept), vocab 96, lm_head separate (quantized)
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "intermediate_size": 80, "vocab_size": 96, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
SHAPES = {
    "model.embed_tokens.weight": (96, 64),
    "model.layers.0.input_layernorm.weight": (64,),
    "model.layers.0.self_attn.q_proj.weight": (64, 64),
    "model.layers.0.self_attn.k_proj.weight": (32, 64),
    "model.layers.0.self_attn.v_proj.weight": (32, 64),
    "model.layers.0.self_attn.o_proj.weight": (64, 64),
    "model.layers.0.post_attention_layernorm.weight": (64,),
    "model.layers.0.mlp.gate_proj.weight": (80, 64),
    "model.layers.0.mlp.up_proj.weight": (80, 64),
    "model.layers.0.mlp.down_proj.weight": (64, 80),
    "model.norm.weight": (64,),
    "lm_head.weight": (96, 64),
}
QUANTIZED = {n for n, s in SHAPES.items() if len(s) == 2 and "embed" not in n and s[1] % 32 == 0}


def halfway_q8(rng):
    """32 values that are exact halfway cases of x / d: amax 127 gives d = 1
    (exact in F16) and 1 / d = 1, so x = k + 0.5 must round away from
    zero (and 127 itself stays); exact in BF16 and F16 too."""
    k = rng.integers(-126, 126, size=32).astype(np.float32)
    b = k + np.where(k >= 0, 0.5, -0.5).astype(np.float32)
    b[0] = 127.0 if b[0] > 0 else -127.0
    return b


def halfway_q4(rng):
    """Q4_0's: -8 first gives d = 1, so x = k + 0.5 (k in -8..6) must
    round up to k + 1."""
    b = rng.integers(-8, 7, size=32).astype(np.float32) + np.float32(0.5)
    b[0] = -8.0
    return b


def even_q8(a):
    """Q8_0 with round-half-to-even instead of GGML's roundf."""
    blocks = a.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.rint(blocks * inv).astype(np.int8).view(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q], axis=1).tobytes()


def even_q4(a):
    """Q4_0 with round-half-to-even instead of trunc(x / d + 8.5)."""
    blocks = a.reshape(-1, 32)
    m = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=1)[:, None], axis=1)
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.clip(np.rint(blocks * inv) + 8, 0, 15).astype(np.uint8)
    q = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q], axis=1).tobytes()


# --quantize name -> (gguf type, bytes a block, halfway block, round to even)
FORMATS = {
    "q8_0": (Q8_0, 34, halfway_q8, even_q8),
    "q4_0": (Q4_0, 18, halfway_q4, even_q4),
}


def edge_rows(dt, fmt, rng):
    """Rows (64 columns: two blocks each) of edge cases for dtype dt and
    format fmt."""
    halfway = FORMATS[fmt][2]
    sign_tie = np.concatenate([[3.0, -3.0], rng.uniform(-2, 2, 30)])
    huge = {"F32": 3.0e38, "BF16": 3.0e38, "F16": 65504.0}[dt]
    tiny = {"F32": 1.0e-30, "BF16": 1.0e-30, "F16": 6.0e-8}[dt]
    rows = [
        np.concatenate([np.zeros(32), rng.standard_normal(32)]),      # an all-zero block
        np.concatenate([rng.uniform(-1, 1, 32) * huge / 4, [huge] + [0.0] * 31]),
        rng.standard_normal(64) * tiny,                               # scale flushes to 0
        rng.standard_normal(64) * 1e-5,                               # subnormal F16 scale
        np.concatenate([halfway(rng), -halfway(rng)]),
        np.concatenate([halfway(rng) / 2, halfway(rng) * 4]),  # d = 0.5, 4
        np.concatenate([sign_tie, -sign_tie]),  # +m then -m, and the reverse
    ]
    return [np.asarray(r, dtype=np.float32) for r in rows]


def make_checkpoint(d, dt, fmt, seed):
    rng = np.random.default_rng(seed)
    tensors, values = {}, {}
    for name, shape in SHAPES.items():
        if len(shape) == 1:
            a = np.ones(shape, dtype=np.float32)
        else:
            # rows of magnitudes from 1e-3 to 1e3, one outlier per row
            a = rng.standard_normal(shape).astype(np.float32)
            a *= (10.0 ** rng.uniform(-3, 3, size=(shape[0], 1))).astype(np.float32)
            a[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] *= 20
            if name == "model.layers.0.self_attn.q_proj.weight":
                for i, r in enumerate(edge_rows(dt, fmt, rng)):
                    a[i] = r
        b = to_bytes(a, dt)
        tensors[name] = (dt, shape, b)
        values[name] = from_bytes(b, dt, shape)  # exactly what the checkpoint holds
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(CONFIG, fh)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    return tensors, values


def check_bytes(tmp, fmt):
    qt, bb, _, even = FORMATS[fmt]
    name_q = qt.name
    for i, dt in enumerate(["F32", "BF16", "F16"]):
        d = os.path.join(tmp, f"ckpt-{fmt}-{dt}")
        tensors, values = make_checkpoint(d, dt, fmt, 17 + i)
        p = dyn("model", "info", "--quantize", fmt, "--tensors", "--json", d)
        if p.returncode != 0:
            report(f"{fmt} {dt} quantized bytes", False, p.stderr.strip())
            continue
        info = json.loads(p.stdout)
        got = {t["name"]: t for t in info["tensors"]}
        bad = []
        for name, (sdt, shape, raw) in tensors.items():
            t = got.get(name)
            if name in QUANTIZED:
                ref = quantize(values[name], qt)
                want = (name_q, ref.nbytes, hashlib.sha256(ref.tobytes()).hexdigest())
                if ref.nbytes != shape[0] * shape[1] // 32 * bb:
                    bad.append(f"{name}: gguf gave {ref.nbytes} bytes")
            else:
                want = (sdt, len(raw), hashlib.sha256(raw).hexdigest())
            have = (t["dtype"], t["bytes"], t["sha256"]) if t else None
            if have != want:
                bad.append(f"{name}: {have} != {want}")
        n_q = info.get("quantized_matrices"), info.get("unquantized_matrices")
        if n_q != (len(QUANTIZED), 1) or info.get("quantized") != name_q:
            bad.append(f"counts {n_q}, quantized {info.get('quantized')}")
        report(f"{fmt} {dt} quantized bytes equal gguf's", not bad, "; ".join(bad[:3]))
        # the edge rows are what they claim to be, in the reference's eyes
        edge = values["model.layers.0.self_attn.q_proj.weight"][:7]
        q = quantize(edge, qt).reshape(-1, bb)
        zero = quantize(np.zeros(32, dtype=np.float32), qt)
        scales = q[:, :2].copy().view(np.float16).ravel()
        ok = (q[0].tobytes() == zero.tobytes() and scales[0] == 0 and  # the zero block
              np.isinf(scales[3]) == (dt != "F16") and scales[4] == 0 and
              q[4].tobytes() != zero.tobytes())  # q of the block whose scale is 0
        ok = ok and even(edge[4:6]) != quantize(edge[4:6], qt).tobytes()
        # Q4_0: the signed scale of the first largest value (Q8_0: both +)
        ok = ok and (fmt != "q4_0" or (scales[12] < 0 < scales[13]))
        report(f"{fmt} {dt} edge blocks exercise zero, inf and 0 scales and halfway cases", ok,
               f"scales {scales}")


def fake_quantized_stories(dst, qt):
    """stories260K with each quantized projection replaced by gguf's
    dequantized weights of type qt, stored as F32; returns their names."""
    src = os.path.join(MODELS, "stories260K")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    out, quantized = {}, set()
    for name, (dt, shape, raw) in tensors.items():
        a = from_bytes(raw, dt, shape)
        if len(shape) == 2 and "embed" not in name and shape[1] % 32 == 0:
            a = dequantize(quantize(a, qt), qt).reshape(shape).astype(np.float32)
            quantized.add(name)
        out[name] = ("F32", shape, a.astype(np.float32).tobytes())
    write_safetensors(os.path.join(dst, "model.safetensors"), out)
    return quantized


def greedy(model, *extra):
    p = dyn("run", model, "--raw", "--prompt", "", "--temperature", "0", "--max-tokens",
            "200", "--threads", "2", "--verbose", *extra)
    return p.returncode, p.stdout, p.stderr


# Short greedy runs from several prompts, each against the reference: an
# activation within a float rounding of a halfway point may round the
# other way in dyn than in torch, and the step (and, through the KV cache,
# every later one) then differs by up to ~0.2 (q4_0 on this tiny model);
# otherwise a run matches to ~1e-5.  A majority of the runs must match
# within EXACT_TOL (without the activations' quantization in the
# reference none does: ~0.1 off), every run within LOOSE_TOL (the format's
# tolerance against unquantized transformers, logits_transformers.py).
PROMPTS = ["Once upon a time", "The cat sat", "Lily and Tom went to the park", "One day",
           "There was a big dog", "She was happy", "The sun", "Tim had a red ball"]
STEPS = 6
EXACT_TOL = 1e-3
LOOSE_TOL = {"q8_0": 0.4, "q4_0": 8.0}


def act_quant(x):
    """x as the CPU kernels see it: per 32-element block of the last
    axis, q = round-half-even(x * (127 / amax)) times d = amax / 127 (all
    float32; a block of zeros stays zero)."""
    b = x.reshape(*x.shape[:-1], x.shape[-1] // 32, 32)
    amax = b.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    return (torch.round(b * inv) * (amax / 127.0)).reshape(x.shape)


def reference_logprobs(folder, quantized, ids):
    """transformers' logprobs at every position of ids, with the inputs of
    the Linear layers whose weights are in quantized quantized first."""
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hooked = 0
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear) and name + ".weight" in quantized:
            mod.register_forward_pre_hook(lambda _m, args: (act_quant(args[0]),))
            hooked += 1
    with torch.no_grad():
        return hooked, torch.log_softmax(m(torch.tensor([ids])).logits[0].double(), dim=-1)


def check_engine(tmp, fmt):
    qt = FORMATS[fmt][0]
    fq = os.path.join(tmp, "stories-fake-" + fmt)
    quantized = fake_quantized_stories(fq, qt)
    stories = os.path.join(MODELS, "stories260K")
    exact, worst_all, bad = 0, 0.0, []
    for i, prompt in enumerate(PROMPTS):
        logits = os.path.join(tmp, f"{fmt}-{i}.jsonl")
        p = dyn("run", stories, "--raw", "--prompt", prompt, "--temperature", "0",
                "--max-tokens", str(STEPS), "--threads", "2", "--kv-cache-dtype", "f32",
                "--quantize", fmt, "--logits-file", logits)
        rec = None
        if p.returncode == 0:
            with open(logits) as fh:
                rec = json.loads(fh.readline())
        if not rec or len(rec["tokens"]) != STEPS:
            bad.append(f"{prompt!r}: dyn run failed: {p.stderr[-200:]}")
            continue
        ids = rec["prompt"] + rec["tokens"][:-1]
        hooked, ref = reference_logprobs(fq, quantized, ids)
        ref = ref[len(rec["prompt"]) - 1:]
        got = torch.log_softmax(torch.tensor(rec["logits"], dtype=torch.float64), dim=-1)
        worst = (got - ref).abs().max().item()
        worst_all = max(worst_all, worst)
        top2 = ref.topk(2, dim=-1).values
        flips = [j for j, t in enumerate(rec["tokens"])
                 if t != ref[j].argmax().item() and (top2[j, 0] - top2[j, 1]).item() >= worst]
        exact += worst <= EXACT_TOL and not flips
        if hooked < 30 or worst > LOOSE_TOL[fmt] or flips:
            bad.append(f"{prompt!r}: {hooked} layers hooked, max diff {worst}, flips {flips}")
    report(f"stories260K {fmt}: {exact} of {len(PROMPTS)} greedy runs within {EXACT_TOL} of "
           "transformers on the same quantized weights and activations, all within "
           f"{LOOSE_TOL[fmt]} (max {worst_all:.2e})", exact * 2 > len(PROMPTS) and not bad,
           "; ".join(bad))
    rc_q, got, err_q = greedy(stories, "--quantize", fmt)
    rc_f, _, err_f = greedy(fq)
    with open(os.path.join(MODELS, "stories260K", "expected_greedy_from_bos.txt")) as fh:
        golden = fh.read()
    report(f"the {fmt} startup line names the quantization",
           rc_q == 0 and rc_f == 0 and f"projections {qt.name}" in err_q and
           "projections" not in err_f, err_q.strip()[:300])
    # not a vacuous comparison: the quantized model decodes differently from
    # F32 (Q8_0 only after its first 200 characters)
    report(f"{fmt} text differs from the F32 golden (so quantization took effect)",
           got != golden and (fmt != "q8_0" or got[:200] == golden[:200]), got[:300])


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-quant-")
    try:
        for fmt in FORMATS:
            check_bytes(tmp, fmt)
            check_engine(tmp, fmt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
