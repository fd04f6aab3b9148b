"""kv_dtype - --kv-cache-dtype bf16 and f16 against f32 K/V.

References, independent of the 16-bit code under test: the F32 pool's
logits (the engine's F32 attention, checked against transformers by
test_tiny_models and logits_transformers.py) and stories260K's 200-token
golden text (expected_greedy_from_bos.txt, llama2.c's own output).

  - stories260K, 200 greedy tokens from BOS, and a dummy-weight shape
    (stories260K's tokenizer; hidden 576, 9 query and 3 KV heads of 64:
    SmolLM2-135M's attention, 8 layers), 48 tokens after a text prompt,
    through `dyn run --logits-file` (every step's full logits): bf16 and
    f16 give the F32 pool's greedy tokens, and every logprob of the
    whole vocabulary at every step within TOL of the F32 pool's (and not
    equal to them: the pool's dtype took effect).  The default (auto)
    is f16 and matches the golden text.
  - memory: with the same --kv-cache-tokens the startup line's pool is
    half the F32 one's; a worker's /metrics dyn_worker_kv_cache_bytes is
    blocks x 2 x layers x block size x KV heads x head dim x 2, and its
    model card says kv_dtype f16.
  - disaggregation with f16 K/V (`dyn rpc call` to prefill, decode and agg
    workers, as disagg_worker.py): the decode worker fetches the prompt's
    blocks (bytes as worked out with 2-byte elements) and answers with
    the agg worker's tokens, logprobs within DISAGG_TOL (the prefill and
    agg workers compute the prompt in other chunks, whose K/V round to
    F16 neighbours at times: not bit-equal as with F32).
  - mismatch: a decode worker with bf16 K/V given an f16 prefill worker's
    kv_source does not fetch (blocks are never converted): it logs both
    layouts, counts a "layout" fallback, prefills locally, and still
    answers as a bf16 agg worker; a frontend counts the prefill worker as
    a layout mismatch (dyn_frontend_kv_layout_mismatches) and logs both.
  - an unknown --kv-cache-dtype is a usage error.
"""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

GOLDEN = os.path.join(d.MODEL, "expected_greedy_from_bos.txt")
# largest |logprob - F32 pool's| over the whole vocabulary and every step;
# measured on this machine: stories260K bf16 0.196, f16 0.025; shape
# bf16 0.0051, f16 0.00075
TOL = {"stories260K": {"bf16": 0.4, "f16": 0.05}, "shape": {"bf16": 0.02, "f16": 0.003}}
DISAGG_TOL = 1e-3       # measured up to 4e-5
BLOCK = 16


def logsoftmax(row):
    m = max(row)
    s = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - s for x in row]


def run(model, dtype, extra, logits):
    args = ["run", model, "--raw", "--temperature", "0", "--threads", "1", "--verbose",
            "--logits-file", logits] + extra
    if dtype:
        args += ["--kv-cache-dtype", dtype]
    p = d.run_offline(*args)
    rec = None
    if p.returncode == 0 and os.path.exists(logits):
        with open(logits) as f:
            rec = json.loads(f.readline())
    return p, rec


def shape_model(tmp):
    m = os.path.join(tmp, "shape")
    os.makedirs(m)
    for f in os.listdir(d.MODEL):
        if f != "model.safetensors":
            shutil.copy(os.path.join(d.MODEL, f), m)
    with open(os.path.join(d.MODEL, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=576, intermediate_size=1536, num_hidden_layers=8,
               num_attention_heads=9, num_key_value_heads=3, head_dim=64,
               max_position_embeddings=2048)
    with open(os.path.join(m, "config.json"), "w") as f:
        json.dump(cfg, f)
    return m


def compare(label, model, extra, tmp):
    out = {}
    for t in ("f32", "bf16", "f16"):
        p, rec = run(model, t, extra, os.path.join(tmp, f"{label}-{t}.jsonl"))
        if not d.check(f"{label}: dyn run --kv-cache-dtype {t}", rec is not None and
                       len(rec["logits"]) == len(rec["tokens"]) > 0, p.stderr[-500:]):
            return None
        out[t] = (p, rec)
        d.check(f"{label}: the startup line names the {t.upper()} pool",
                f"KV cache {t.upper()}," in p.stderr, p.stderr[-500:])
    ref = out["f32"][1]
    for t in ("bf16", "f16"):
        rec = out[t][1]
        d.check(f"{label} {t}: the F32 pool's greedy tokens", rec["tokens"] == ref["tokens"],
                f"{rec['tokens'][:40]} vs {ref['tokens'][:40]}")
        worst = max(max(abs(a - b) for a, b in zip(logsoftmax(x), logsoftmax(y)))
                    for x, y in zip(rec["logits"], ref["logits"]))
        print(f"  {label} {t}: max |logprob - F32 pool's| {worst:.6f} over "
              f"{len(ref['tokens'])} steps x {len(ref['logits'][0])}")
        d.check(f"{label} {t}: every logprob within {TOL[label][t]} of the F32 pool's, "
                "and not all equal", 0 < worst <= TOL[label][t], f"{worst}")
    return out


def check_memory(model, tmp):
    mb = {}
    for t in ("f32", "f16"):
        p = d.run_offline("run", model, "--raw", "--prompt", "", "--max-tokens", "1",
                          "--verbose", "--kv-cache-tokens", "65536", "--kv-cache-dtype", t)
        line = [x for x in p.stderr.splitlines() if "KV cache" in x]
        try:
            mb[t] = float(line[0].split("tokens (")[1].split(" MB")[0])
        except (IndexError, ValueError):
            mb[t] = None
    L, KVH, HD, _ = d.model_kv_shape(model)
    want = 65536 * 2 * L * KVH * HD * 4 / 2**20
    d.check("memory: the f16 pool is half the f32 one for the same --kv-cache-tokens",
            mb["f32"] is not None and abs(mb["f32"] - want) < 0.1 and mb["f16"] is not None
            and abs(mb["f16"] - want / 2) < 0.1, f"{mb}, want {want} and half")


# ---- disaggregation ---------------------------------------------------------------
def worker(role, dtype):
    w = d.Proc(["serve", "--model", d.MODEL, "--engine", "builtin", "--role", role,
                "--system-port", "0", "--lease-ttl", "3000", "--threads", "1",
                "--kv-cache-dtype", dtype],
               r"instance ([0-9a-f]{16}) .* system port (\d+)")
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


def call(w, ids, disagg=None):
    body = {"token_ids": ids, "sampling": {"temperature": 0},
            "stop": {"max_tokens": 12, "ignore_eos": True}, "logprobs": 0}
    if disagg:
        body["disagg"] = disagg
    p = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id,
                        "--timeout", "30", "dyn/backend/generate", json.dumps(body)],
                       capture_output=True, text=True, timeout=40)
    frames = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    ids_out, lps = [], []
    for f in frames:
        ids_out += f.get("token_ids", [])
        lps += [lp["logprob"] for lp in f.get("logprobs", [])]
    return ids_out, lps, (frames[-1] if frames else {}), p.stderr


def metric(w, name, **labels):
    return d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1], name,
                    **labels) or 0


def close(got, want):
    return (got[0] == want[0] and len(got[0]) == 12 and len(got[1]) == len(want[1]) and
            all(abs(a - b) <= DISAGG_TOL for a, b in zip(got[1], want[1])))


def check_disagg():
    L, KVH, HD, vocab = d.model_kv_shape(d.MODEL)
    rng = random.Random(7)
    ids = [1] + [rng.randrange(3, vocab) for _ in range(99)]
    agg, pre, dec = worker("agg", "f16"), worker("prefill", "f16"), worker("decode", "f16")
    want = call(agg, ids)
    src = call(pre, ids, {"prefill": True})[2].get("kv_source") or {}
    d.check("disagg f16: the layout names f16", src.get("layout") ==
            f"L{L}-KV{KVH}x{HD}-B{BLOCK}-f16", f"{src}")
    got = call(dec, ids, {"kv_source": src})
    d.check(f"disagg f16: decode answers as the agg worker (logprobs within {DISAGG_TOL})",
            close(got, want), f"got {got[:2]}, want {want[:2]}")
    blocks = math.ceil((len(ids) - 1) / BLOCK)
    d.check("disagg f16: the decode worker fetched the blocks, 2 bytes an element",
            metric(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") ==
            blocks * 2 * L * BLOCK * KVH * HD * 2 and
            metric(dec, "dyn_worker_prefill_total", where="remote") == 1,
            metric(dec, "dyn_worker_kv_transfer_bytes_total", direction="in"))
    cap = metric(dec, "dyn_worker_kv_blocks_capacity")
    d.check("/metrics: the pool's bytes are its blocks in F16",
            cap > 0 and metric(dec, "dyn_worker_kv_cache_bytes") ==
            cap * 2 * L * BLOCK * KVH * HD * 2, f"{cap}")
    card = subprocess.run([d.DYN, "store", "ls", "--store", d.store,
                           "v1/models/"], capture_output=True, text=True, timeout=10).stdout
    d.check("the model card says kv_dtype f16", '"kv_dtype":"f16"' in card, card[:600])

    # a bf16 decode worker and an f16 prefill worker: no conversion, a fallback
    agg16, dec16 = worker("agg", "bf16"), worker("decode", "bf16")
    want16 = call(agg16, ids)
    src = call(pre, ids, {"prefill": True})[2].get("kv_source") or {}
    got = call(dec16, ids, {"kv_source": src})
    d.check("mismatch: the bf16 decode worker answers as a bf16 agg worker", close(got, want16),
            f"got {got[:2]}, want {want16[:2]}")
    d.check("mismatch: nothing fetched, a layout fallback counted, both layouts logged",
            metric(dec16, "dyn_worker_kv_fallbacks_total", cause="layout") == 1 and
            metric(dec16, "dyn_worker_kv_transfer_bytes_total", direction="in") == 0 and
            "-f16" in dec16.stderr() and "-bf16" in dec16.stderr(), dec16.stderr()[-600:])
    # and a frontend does not pair the f16 prefill worker with the bf16 decode one
    fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0"])
    ok = d.wait_until(lambda: d.metric(d.http_get(fe.url + "/metrics")[1],
                                       "dyn_frontend_kv_layout_mismatches") == 1, timeout=20)
    warned = [x for x in fe.stderr().splitlines() if "do not share a KV layout" in x]
    d.check("mismatch: the frontend counts the layout mismatch and logs both dtypes",
            ok and len(warned) == 1 and "-B16-f16)" in warned[0] and "-B16-bf16)" in warned[0],
            "\n".join(warned) or fe.stderr()[-600:])


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-kv-dtype-")
    try:
        r = compare("stories260K", d.MODEL, ["--prompt", "", "--max-tokens", "200"], tmp)
        if r:
            with open(GOLDEN) as f:
                golden = f.read()
            p, rec = run(d.MODEL, None, ["--prompt", "", "--max-tokens", "200"],
                         os.path.join(tmp, "default.jsonl"))
            d.check("the default KV dtype is f16 and keeps the 200-token golden",
                    "KV cache F16," in p.stderr and p.stdout.rstrip("\n") == golden and
                    rec["tokens"] == r["f16"][1]["tokens"], p.stdout[:200] + p.stderr[-300:])
        compare("shape", shape_model(tmp),
                ["--load-format", "dummy", "--max-tokens", "48", "--prompt",
                 "Once upon a time there was a little girl. She liked to"], tmp)
        check_memory(d.MODEL, tmp)
        p = d.run_offline("run", d.MODEL, "--prompt", "x", "--kv-cache-dtype", "q8_0")
        d.check("an unknown KV dtype is a usage error naming the choices",
                p.returncode == 2 and "not one of auto, f32, bf16, f16" in p.stderr, p.stderr)
        check_disagg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
