"""disagg_worker - prefill and decode workers (`dyn serve --role prefill`,
`--role decode`) driven over the request plane with `dyn rpc call`, no
frontend.

References, each independent of the code under test: a decode worker's
tokens and logprobs are compared with those of an aggregated worker (the
engine's own prefill, which test_engine checks against a reference
forward pass) for the same greedy request; the bytes a fetch moves with
the KV layout worked out here from the model's config.json (2 x layers x
block size x KV heads x head dim x 4 bytes of f32, or 2 bytes of bf16 for
mock workers), for the blocks that the prompt's length and the decode
worker's prefix cache leave to fetch; the instance records with
dyn-store(5)'s literal example.  Over tcp, and over ucx where it loads.

Checked (builtin engine, stories260K): a prefill request answers a
kv_source covering the prompt; the decode worker's answer with it equals
the agg worker's, the fetch is counted with its bytes, the prefill
worker's hold is released; a repeated prompt reuses the decode worker's
cached blocks and fetches none; a bogus handle and an expired hold fall
back to local prefill (same answer, fallback counted), and so does a
lender that speaks garbage; a call cancelled while its fetch hangs frees
its blocks (fallback counted as cancelled); a decode worker of
another block size refuses the layout (fallback counted); a prefill
request to an agg worker is refused; the echo engine refuses the roles;
/metrics passes promtool.  Mock engine (qwen3-0.6b-shape): the modelled
bytes and a fetch time no shorter than bytes / --kv-transfer-bandwidth; a
call cancelled during the modelled transfer frees its blocks.
"""
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
STORE_MAN = os.path.join(d.TOP, "man", "dyn-store.5")




LAYERS, KV_HEADS, HEAD_DIM, VOCAB = d.model_kv_shape(d.MODEL)
BLOCK = 16                      # the builtin engine's default block size


def block_bytes(block, elem):
    return 2 * LAYERS * block * KV_HEADS * HEAD_DIM * elem


def worker(role, engine="builtin", extra=(), model=None):
    # F32 K/V: the 1e-5 agreement with the agg worker is the F32 pool's (a
    # 16-bit one rounds K/V computed in another chunking: kv_dtype.py)
    args = ["serve", "--model", model or d.MODEL, "--engine", engine, "--role", role,
            "--system-port", "0", "--lease-ttl", "3000"] + list(extra)
    if engine == "builtin":
        args += ["--kv-cache-dtype", "f32"]
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)")
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


def call(w, body, timeout=30):
    """The frames of a generate call, and the error text (or "")."""
    p = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id,
                        "--timeout", str(timeout), "dyn/backend/generate", json.dumps(body)],
                       capture_output=True, text=True, timeout=timeout + 10)
    frames = []
    for line in p.stdout.splitlines():
        try:
            frames.append(json.loads(line))
        except ValueError:
            pass
    return frames, p.stderr if p.returncode else ""


def tokens(frames):
    ids, lps = [], []
    for f in frames:
        ids += f.get("token_ids", [])
        lps += [lp["logprob"] for lp in f.get("logprobs", [])]
    return ids, lps


def metrics(w):
    return d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1]


def m(w, name, **labels):
    return d.metric(metrics(w), name, **labels) or 0


def request(ids, disagg=None):
    body = {"token_ids": ids, "sampling": {"temperature": 0},
            "stop": {"max_tokens": 12, "ignore_eos": True}, "logprobs": 0}
    if disagg:
        body["disagg"] = disagg
    return body


def prompt(n, seed):
    rng = random.Random(seed)
    return [1] + [rng.randrange(3, VOCAB) for _ in range(n - 1)]


def same_answer(name, got, want):
    (gi, gl), (wi, wl) = tokens(got), tokens(want)
    close = len(gl) == len(wl) and all(abs(a - b) <= 1e-5 for a, b in zip(gl, wl))
    d.check(name, gi == wi and len(gi) == 12 and close, f"got {gi} {gl}, want {wi} {wl}")


def prefill(w, ids):
    frames, err = call(w, request(ids, {"prefill": True}))
    last = frames[-1] if frames else {}
    return last.get("kv_source"), last, err




def man_example():
    """dyn-store(5)'s literal prefill instance metadata."""
    text = open(STORE_MAN).read()
    for block in re.findall(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed$", text, re.S | re.M):
        if '"role":"prefill"' in block:
            return json.loads(block.replace("\\&", "").replace("\\e", "\\"))
    return None


agg = worker("agg")
pre = worker("prefill")
dec = worker("decode")

# ---- instance records --------------------------------------------------------
doc = man_example()
pm, dm = d.instance_meta(pre), d.instance_meta(dec)
fp = f"L{LAYERS}-KV{KV_HEADS}x{HEAD_DIM}-B{BLOCK}-f32"
d.check("prefill instance record has the documented members", doc is not None and
        set(pm) == set(doc) and set(pm["kv"]) == set(doc["kv"]) and pm["role"] == "prefill" and
        re.fullmatch(r"127\.0\.0\.1:\d+", pm["kv"]["tcp"]) and pm["kv"]["ucx"] in (True, False)
        and pm["kv"]["layout"] == fp and pm["kv"]["block_size"] == BLOCK, f"{pm} vs {doc}")
d.check("decode instance record: role, layout and block size", dm.get("role") == "decode" and
        dm.get("kv") == {"layout": fp, "block_size": BLOCK}, f"{dm}")
d.check("agg instance record has no kv member", "kv" not in d.instance_meta(agg))

# ---- prefill, then decode with its kv_source ------------------------------------
ids = prompt(100, 1)
want, err = call(agg, request(ids))
d.check("agg worker answers", len(tokens(want)[0]) == 12, err)
src, last, err = prefill(pre, ids)
d.check("prefill answers a kv_source covering the prompt, no token",
        src is not None and src["n_tokens"] == len(ids) and src["layout"] == fp and
        src["block_size"] == BLOCK and src["worker"] == pre.id and
        src["tcp"] == pm["kv"]["tcp"] and last.get("token_ids") == [] and
        last.get("usage", {}).get("completion_tokens") == 0 and
        last.get("usage", {}).get("prompt_tokens") == len(ids), f"{last} {err}")
d.check("the prefill worker holds the prompt", m(pre, "dyn_worker_kv_holds") == 1,
        metrics(pre)[-2000:])
got, err = call(dec, request(ids, {"kv_source": src}))
same_answer("decode with the kv_source answers as the agg worker", got, want)
pending = len(ids) - 1
n_fetch = math.ceil(pending / BLOCK)
d.check("decode fetched the prompt's blocks: bytes from the layout",
        m(dec, "dyn_worker_kv_transfers_total", direction="in", result="ok") == 1 and
        m(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") ==
        n_fetch * block_bytes(BLOCK, 4) and
        m(dec, "dyn_worker_prefill_total", where="remote") == 1 and
        m(dec, "dyn_worker_kv_transfer_seconds_count") == 1, metrics(dec)[-3000:])
d.check("the prefill worker lent them and the hold is released",
        d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0, 5) and
        m(pre, "dyn_worker_kv_transfers_total", direction="out", result="ok") >= 1 and
        m(pre, "dyn_worker_kv_transfer_bytes_total", direction="out") ==
        n_fetch * block_bytes(BLOCK, 4), metrics(pre)[-3000:])
d.check("the decode worker computed only the last prompt token: cached_tokens of the "
        "prefix cache only", tokens(got)[0] and got[-1]["usage"]["prompt_tokens"] == len(ids),
        f"{got[-1] if got else None}")

# ---- a repeated prompt: the decode worker's own cache ---------------------------
bytes0 = m(dec, "dyn_worker_kv_transfer_bytes_total", direction="in")
src2, _, err = prefill(pre, ids)
got, err = call(dec, request(ids, {"kv_source": src2}))
same_answer("repeated prompt: decode answers as the agg worker", got, want)
full = pending // BLOCK       # whole blocks of the pending tokens, cached on the decode worker
d.check("repeated prompt: only the blocks not cached on the decode worker move",
        m(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") - bytes0 ==
        (n_fetch - full) * block_bytes(BLOCK, 4) and
        d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0, 5), metrics(dec)[-3000:])

# ---- a bogus handle: local prefill, same answer --------------------------------
ids3 = prompt(70, 3)
want3, _ = call(agg, request(ids3))
src3, _, _ = prefill(pre, ids3)
bogus = dict(src3, handle="%016x" % (int(src3["handle"], 16) ^ 0x5a5a))
got, err = call(dec, request(ids3, {"kv_source": bogus}))
same_answer("bogus handle: decode falls back and answers as the agg worker", got, want3)
d.check("bogus handle: the fallback is counted",
        m(dec, "dyn_worker_kv_fallbacks_total", cause="fetch_failed") == 1 and
        m(dec, "dyn_worker_kv_transfers_total", direction="in", result="failed") == 1 and
        m(dec, "dyn_worker_prefill_total", where="local") >= 1 and
        m(pre, "dyn_worker_kv_transfers_total", direction="out", result="failed") >= 1,
        metrics(dec)[-3000:])

# ---- an expired hold ---------------------------------------------------------------
pre2 = worker("prefill", extra=["--kv-hold-timeout", "200"])
ids4 = prompt(60, 4)
want4, _ = call(agg, request(ids4))
src4, _, err = prefill(pre2, ids4)
d.check("expired hold: released by the timeout",
        src4 is not None and d.wait_until(lambda: m(pre2, "dyn_worker_kv_holds") == 0, 5) and
        m(pre2, "dyn_worker_kv_hold_expired_total") == 1, metrics(pre2)[-2000:] + err)
got, err = call(dec, request(ids4, {"kv_source": src4}))
same_answer("expired hold: decode falls back and answers as the agg worker", got, want4)
d.check("expired hold: the fallback is counted",
        m(dec, "dyn_worker_kv_fallbacks_total", cause="fetch_failed") == 2, metrics(dec)[-3000:])

# ---- another layout ------------------------------------------------------------------
dec32 = worker("decode", extra=["--block-size", "32"])
ids5 = prompt(80, 5)
want5, _ = call(agg, request(ids5))
src5, _, _ = prefill(pre, ids5)
holds = m(pre, "dyn_worker_kv_holds")      # src5's, and src3's (its fetch had a bogus handle)
got, err = call(dec32, request(ids5, {"kv_source": src5}))
same_answer("other block size: decode prefills locally and answers as the agg worker", got,
            want5)
d.check("other block size: the layout fallback is counted and no fetch made",
        m(dec32, "dyn_worker_kv_fallbacks_total", cause="layout") == 1 and
        m(dec32, "dyn_worker_kv_transfers_total", direction="in") == 0 and
        "B32" in d.instance_meta(dec32).get("kv", {}).get("layout", ""),
        metrics(dec32)[-3000:])
d.check("other block size: the warning names both layouts",
        d.wait_until(lambda: fp in dec32.stderr() and
                     fp.replace("B16", "B32") in dec32.stderr(), 3), dec32.stderr())

d.check("other block size: the prefill worker's hold is released all the same",
        d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == holds - 1, 5),
        f"holds {holds} -> {m(pre, 'dyn_worker_kv_holds')}")

# ---- a one-token prompt: no KV to fetch, the hold released all the same -------------
want1, _ = call(agg, request([1]))
src1, _, err = prefill(pre, [1])
holds = m(pre, "dyn_worker_kv_holds")
fetched = m(dec, "dyn_worker_kv_transfers_total", direction="in")
local = m(dec, "dyn_worker_prefill_total", where="local")
got, err = call(dec, request([1], {"kv_source": src1}))
same_answer("a one-token prompt: decode answers as the agg worker", got, want1)
d.check("a one-token prompt: nothing fetched, prefilled locally, the prefill worker's hold "
        "released", src1 is not None and src1["n_tokens"] == 1 and
        m(dec, "dyn_worker_kv_transfers_total", direction="in") == fetched and
        m(dec, "dyn_worker_prefill_total", where="local") == local + 1 and
        d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == holds - 1, 5),
        f"{src1} holds {holds} -> {m(pre, 'dyn_worker_kv_holds')} {err}")

# ---- fake lenders: one that never answers, one that speaks garbage -------------------
def fake_lender(garbage):
    """A data port at 127.0.0.1:PORT that accepts and then says nothing, or
    answers random bytes and closes."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    held = []

    def run():
        rng = random.Random(9)
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            held.append(c)
            if garbage:
                try:
                    c.recv(4096)
                    c.sendall(bytes(rng.randrange(256) for _ in range(4096)))
                except OSError:
                    pass
                c.close()
    threading.Thread(target=run, daemon=True).start()
    return s, "127.0.0.1:%d" % s.getsockname()[1]


silent, silent_addr = fake_lender(False)
ids6 = prompt(90, 6)
src6, _, _ = prefill(pre, ids6)
frames, err = call(dec, request(ids6, {"kv_source": dict(src6, tcp=silent_addr)}), timeout=2)
d.check("a call cancelled during its fetch: the fallback is counted as cancelled and the "
        "request's blocks are freed",
        d.wait_until(lambda: m(dec, "dyn_worker_kv_fallbacks_total", cause="cancelled") == 1 and
                     m(dec, "dyn_worker_kv_blocks_used") == 0 and
                     m(dec, "dyn_worker_active_requests") == 0, 10), metrics(dec)[-3000:])
silent.close()
garbage, garbage_addr = fake_lender(True)
want6, _ = call(agg, request(ids6))
got, err = call(dec, request(ids6, {"kv_source": dict(src6, tcp=garbage_addr)}))
same_answer("a lender speaking garbage: decode falls back and answers as the agg worker", got,
            want6)
d.check("a lender speaking garbage: the fallback is counted",
        m(dec, "dyn_worker_kv_fallbacks_total", cause="fetch_failed") == 3, metrics(dec)[-3000:])
garbage.close()

# ---- the same over UCX, where it loads ---------------------------------------------------
ver = subprocess.run([d.DYN, "version"], capture_output=True, text=True).stdout
if not re.search(r"UCX:\s+version", ver):
    d.skip("ucx transport", "UCX not found (dyn version): " + ver[-200:])
else:
    upre = worker("prefill", extra=["--kv-transport", "ucx"])
    udec = worker("decode", extra=["--kv-transport", "ucx"])
    d.check("ucx: the prefill worker offers it in its instance record",
            d.instance_meta(upre).get("kv", {}).get("ucx") is True, f"{d.instance_meta(upre)}")
    ids7 = prompt(110, 7)
    want7, _ = call(agg, request(ids7))
    src7, _, err = prefill(upre, ids7)
    got, err = call(udec, request(ids7, {"kv_source": src7}))
    same_answer("ucx: decode with the kv_source answers as the agg worker", got, want7)
    d.check("ucx: the prompt's blocks were fetched, the hold released",
            src7 is not None and src7["ucx"] is True and
            m(udec, "dyn_worker_kv_transfer_bytes_total", direction="in") ==
            math.ceil((len(ids7) - 1) / BLOCK) * block_bytes(BLOCK, 4) and
            m(udec, "dyn_worker_prefill_total", where="remote") == 1 and
            d.wait_until(lambda: m(upre, "dyn_worker_kv_holds") == 0, 5),
            metrics(udec)[-2000:] + udec.stderr())

# ---- refusals ------------------------------------------------------------------------
frames, err = call(agg, request(ids, {"prefill": True}))
d.check("a prefill request to an agg worker is refused", not frames and "prefill" in err, err)
frames, err = call(agg, request(ids, {"kv_source": src5}))
same_answer("an agg worker ignores a kv_source", frames, want)
frames, err = call(dec, dict(request(ids), disagg={"prefil": True}))
d.check("an unknown disagg member is refused naming it", not frames and "prefil" in err, err)
p = subprocess.run([d.DYN, "serve", "--model", d.MODEL, "--engine", "echo", "--role", "decode",
                    "--store", d.store], capture_output=True, text=True, timeout=20)
d.check("echo refuses the decode role", p.returncode != 0 and "echo" in p.stderr and
        "decode" in p.stderr, p.stderr)

d.promtool_check("prefill /metrics passes promtool", metrics(pre))
d.promtool_check("decode /metrics passes promtool", metrics(dec))

# ---- mock workers: modelled bytes and time ---------------------------------------------
if not os.path.isdir(SHAPE):
    d.skip("mock workers", f"{SHAPE} not found")
else:
    L, KVH, HD, V = d.model_kv_shape(SHAPE)
    MB = 64                     # the mock engine's default block size
    bw = 2.0                    # GB/s
    mpre = worker("prefill", engine="mock", model=SHAPE, extra=["--speedup-ratio", "100"])
    mdec = worker("decode", engine="mock", model=SHAPE,
                  extra=["--speedup-ratio", "100", "--kv-transfer-bandwidth", str(bw)])
    mids = [random.Random(6).randrange(1000, 30000) for _ in range(1000)]
    body = {"token_ids": mids, "stop": {"max_tokens": 4}}
    frames, err = call(mpre, dict(body, disagg={"prefill": True}))
    msrc = frames[-1].get("kv_source") if frames else None
    mfp = f"L{L}-KV{KVH}x{HD}-B{MB}-bf16"
    d.check("mock prefill answers a kv_source with the bf16 layout",
            msrc is not None and msrc["layout"] == mfp and msrc["n_tokens"] == len(mids),
            f"{frames} {err}")
    t0 = time.time()
    frames, err = call(mdec, dict(body, disagg={"kv_source": msrc}))
    blocks = math.ceil((len(mids) - 1) / MB)
    want_bytes = blocks * 2 * L * MB * KVH * HD * 2
    secs = d.metric(metrics(mdec), "dyn_worker_kv_transfer_seconds_sum") or 0
    d.check("mock decode generates after the modelled transfer",
            len(tokens(frames)[0]) == 4 and
            m(mdec, "dyn_worker_kv_transfer_bytes_total", direction="in") == want_bytes and
            secs >= want_bytes / (bw * 1e9) * 0.95 and time.time() - t0 >= secs,
            f"{frames[-1:]} {err} bytes want {want_bytes} secs {secs}")
    d.check("mock prefill's hold released",
            d.wait_until(lambda: m(mpre, "dyn_worker_kv_holds") == 0, 5), metrics(mpre)[-2000:])
    # a call cancelled while the modelled transfer runs (1000 tokens at 0.01 GB/s: ~12 s)
    slow = worker("decode", engine="mock", model=SHAPE,
                  extra=["--speedup-ratio", "100", "--kv-transfer-bandwidth", "0.01"])
    frames, err = call(mpre, dict(body, disagg={"prefill": True}))
    msrc = frames[-1].get("kv_source") if frames else None
    frames, err = call(slow, dict(body, disagg={"kv_source": msrc}), timeout=1)
    d.check("mock: a call cancelled during the modelled transfer frees its blocks",
            not frames and d.wait_until(
                lambda: m(slow, "dyn_worker_kv_fallbacks_total", cause="cancelled") == 1 and
                m(slow, "dyn_worker_kv_blocks_used") == 0 and
                m(slow, "dyn_worker_active_requests") == 0, 5), metrics(slow)[-3000:])

d.finish()
