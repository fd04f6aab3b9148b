"""disagg_builtin - disaggregated serving end to end with the builtin
engine: OpenAI requests through `dyn frontend --router-mode kv
--max-local-prefill-length 0` (every prompt prefilled on a prefill worker)
to one prefill and one decode worker, against an agg worker of the same
model as the reference.

Two models: stories260K (text prompts, its own tokenizer) and the tiny
random-weight Qwen3 fixture test/fixtures/tiny-models/qwen3-qknorm of
test/gen/make_tiny_models.py (q/k norms, GQA, head dim 32, untied
embeddings: another KV layout), served from a temporary folder with stories260K's tokenizer, its prompts given as
token ids below its vocabulary of 256.  Each over --kv-transport tcp and
ucx (forced: auto picks UCX only with an RDMA device; skipped where `dyn
version` finds no UCX).

References, independent of the code under test: the agg worker's greedy
answers (its prefill is the engine's own, checked by test_engine against a
reference forward pass); the KV bytes and prefix hits worked out here from
the prompts' token ids (stories260K's tokenized with Hugging Face
tokenizers) and the layout in config.json: a prompt of n tokens leaves
n - 1 to the prefill worker (the decode worker computes the last one
itself), in ceil((n-1)/16) blocks of 2 x layers x 16 x KV heads x head dim
x 4 bytes, of which the decode worker reuses the leading full blocks its
prefix cache holds (those of earlier prompts: no prompt here extends
another, so generated tokens never match), at most (n-1) // 16; the prefill
worker's hits are its own earlier prompts' full blocks the same way.

Checked for each model and transport, over 26 or 27 prompts of 1 to ~300
tokens (block boundaries, prefixes of 2 and 3 blocks shared, repeats):
answers equal the agg worker's token for token, logprobs within 1e-5, cached_tokens as worked
out; every request was a remote prefill (frontend), every prompt of two
tokens or more had its KV fetched by the decode worker (no fallback), the
bytes fetched and lent and both workers' prefix hits are as worked out, the
prefill worker holds nothing afterwards (a one-token prompt, whose KV the
decode worker need not fetch, included).  Then the same prompts with a new
opening, all at once (8 in flight): the same answers as the agg worker's,
all remote, no fallback.  Last, a stories260K prefill worker of the same
layout but random weights (--load-format dummy): nearly every answer
changes, so the decode worker computes with the KV it fetched (one that
quietly prefilled the prompt itself would still answer as the agg worker).
"""
import concurrent.futures
import json
import math
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

BLOCK = 16                      # the builtin engine's default block size
MAX_TOKENS = 12
TINY_SRC = os.path.join(d.TOP, "test", "fixtures", "tiny-models", "qwen3-qknorm")
TTL = 3000




def tiny_model():
    """The tiny Qwen3 fixture with stories260K's tokenizer, in a folder of
    its own (the frontend needs a tokenizer to list a model)."""
    m = os.path.join(d.tmp, "tiny-qwen3")
    os.makedirs(m)
    for f in ("config.json", "model.safetensors"):
        os.symlink(os.path.join(TINY_SRC, f), os.path.join(m, f))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        os.symlink(os.path.join(d.MODEL, f), os.path.join(m, f))
    return m


# ---- prompts ---------------------------------------------------------------------------------
STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in "
         "the park with her friends and her big brown dog. ")
OPENINGS = ["Tom had a red ball.", "The sun was hot.", "Hi", "A bird sang in the tree.",
            "Sue and Ben went to the beach with their mom. They wanted to build a big castle "
            "of sand and find shells.",
            "The old man sat on the bench. " * 6 + "He was waiting for his friend, who was late.",
            "Max the cat liked to sleep on the warm mat by the door. One day a mouse ran past "
            "him. " * 5 + "The mouse",
            "There was a big tree in the garden. Birds lived in it and sang every morning. " * 9,
            "Mia found a shiny key under her bed."]
SUFFIXES = ["One day, she saw", "Her dog barked at a cat and", "Then it began to rain, so",
            "She was sad because", "Lily laughed"]


def story_prompts(tok, first=""):
    """(text, ids) of the stories260K prompts: varied lengths, a shared
    prefix of several blocks, repeats."""
    texts = [first + t for t in OPENINGS] + [first + STORY + s for s in SUFFIXES]
    texts += [texts[0], texts[5], texts[9], texts[7]]
    texts += [first + "The dog ran.", first + STORY + "The end.", first + "Lily and Tom"]
    texts += [texts[12], texts[3], texts[8], texts[1], texts[14], texts[2]]
    return [(t, tok.encode(t).ids) for t in texts]


def tiny_prompts(seed):
    """(ids, ids) of the tiny model's prompts (token ids below its
    vocabulary of 256; 1 is BOS)."""
    rng = random.Random(seed)

    def ids(n):
        return [1] + [rng.randrange(3, 256) for _ in range(n - 1)]
    out = [ids(n) for n in (1, 2, 5, 15, 16, 17, 31, 32, 33, 48, 100, 160, 230)]
    shared = ids(3 * BLOCK + 5)
    out += [shared + ids(k)[1:] for k in (2, 9, 17, 30, 60)]
    out += [out[1], out[4], out[8], out[10], out[14], out[12]]
    out += [ids(70), ids(3)]
    return [(p, p) for p in out]


def strict_prefix_free(prompts):
    """No prompt extends another one whose answer fills a block (its
    generated tokens could then hit the prefix cache, which the model below
    ignores)."""
    ids = [tuple(p[1]) for p in prompts]
    return not any(a != b and b[:len(a)] == a and
                   (len(a) + MAX_TOKENS) // BLOCK > len(a) // BLOCK for a in ids for b in ids)


class Cache:
    """A worker's prefix cache as far as these prompts go: the full blocks
    of the prompts it saw."""

    def __init__(self):
        self.blocks = set()

    def hit(self, ids):
        """Leading full blocks of ids it holds, at most (n-1) // BLOCK (the
        last prompt token is always computed)."""
        k = 0
        while (k + 1) * BLOCK <= len(ids) - 1 and tuple(ids[:(k + 1) * BLOCK]) in self.blocks:
            k += 1
        return k

    def add(self, ids):
        for k in range(1, len(ids) // BLOCK + 1):
            self.blocks.add(tuple(ids[:k * BLOCK]))


def worked_out(prompts):
    """Per prompt the decode worker's reused blocks and fetched blocks, and
    the prefill worker's hit blocks, in the order they are sent."""
    dec, pre, out = Cache(), Cache(), []
    for _, ids in prompts:
        p = len(ids) - 1
        reused = dec.hit(ids)
        fetched = math.ceil(p / BLOCK) - reused if p > 0 else 0
        out.append((reused, fetched, pre.hit(ids)))
        dec.add(ids)
        pre.add(ids)
    return out


# ---- processes -------------------------------------------------------------------------------
def worker(model, name, role, transport=None, extra=()):
    args = ["serve", "--model", model, "--served-model-name", name, "--role", role,
            "--engine", "builtin", "--system-port", "0", "--lease-ttl", str(TTL),
            "--threads", "1", "--kv-cache-tokens", "16384",
            # F32 K/V: the 1e-5 bound and the bytes below are the F32 pool's
            # (kv_dtype.py checks 16-bit pools)
            "--kv-cache-dtype", "f32"] + list(extra)
    if transport:
        args += ["--kv-transport", transport]
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


wm = d.sys_metric




fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0",
                 "--prefill-timeout", "20000"])


def fmetrics():
    return d.http_get(fe.url + "/metrics")[1]


def decisions():
    t = fmetrics()
    return {k: d.metric(t, "dyn_frontend_disagg_decisions_total", decision=k) or 0
            for k in ("remote", "local_short", "local_queue", "local_no_prefill")}


def complete(model, prompt):
    """The answer's (tokens, logprobs, text, finish_reason, usage), or the
    error as a string."""
    status, a = d.post_json(fe.url + "/v1/completions",
                            {"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS,
                             "temperature": 0, "logprobs": 1})
    if status != 200:
        return f"HTTP {status}: {a[:300]}" if status else a
    c = a["choices"][0]
    return (c["logprobs"]["tokens"], c["logprobs"]["token_logprobs"], c["text"],
            c["finish_reason"], a["usage"])


def differs(got, want):
    """Why got is not want's answer, or ""."""
    if isinstance(got, str) or isinstance(want, str):
        return f"got {got!r}, want {want!r}"
    if got[0] != want[0] or got[2] != want[2] or got[3] != want[3]:
        return f"got {got[:4]}, want {want[:4]}"
    if len(got[1]) != len(want[1]) or any(abs(a - b) > 1e-5 for a, b in zip(got[1], want[1])):
        return f"logprobs {got[1]} vs {want[1]}"
    if got[4]["prompt_tokens"] != want[4]["prompt_tokens"] or \
            got[4]["completion_tokens"] != want[4]["completion_tokens"]:
        return f"usage {got[4]} vs {want[4]}"
    return ""


ucx_ok = re.search(r"UCX:\s+version", subprocess.run([d.DYN, "version"], capture_output=True,
                                                     text=True).stdout)
transports = ["tcp"] + (["ucx"] if ucx_ok else [])
if not ucx_ok:
    d.skip("ucx transport", "UCX not found by `dyn version` (Debian libucx0)")

try:
    import tokenizers
    stok = tokenizers.Tokenizer.from_file(os.path.join(d.MODEL, "tokenizer.json"))
except (ImportError, OSError, ValueError) as e:
    stok = None
    d.skip("stories260K", f"no Hugging Face tokenizers to work out the token ids: {e}")

tiny = tiny_model()
MODELS = []                     # (label, folder, prompts, variant prompts)
if stok:
    MODELS.append(("stories", d.MODEL, story_prompts(stok), story_prompts(stok, "Then ")))
MODELS.append(("tiny", tiny, tiny_prompts(7), tiny_prompts(8)))

workers = {}
for label, folder, _, _ in MODELS:
    workers[label, "ref"] = worker(folder, f"{label}-ref", "agg")
    for t in transports:
        workers[label, t] = (worker(folder, f"{label}-{t}", "prefill", t),
                             worker(folder, f"{label}-{t}", "decode", t))


def pools_ready():
    models = {m["id"]: m.get("dyn", {}).get("pools")
              for m in json.loads(d.http_get(fe.url + "/v1/models")[1])["data"]}
    return all(models.get(f"{label}-ref") == {"agg": 1, "prefill": 0, "decode": 0} and
               all(models.get(f"{label}-{t}") == {"agg": 0, "prefill": 1, "decode": 1}
                   for t in transports) for label, _, _, _ in MODELS)


ok = d.wait_until(pools_ready, timeout=30)
d.check("the frontend lists the agg, prefill and decode pools", ok,
        d.http_get(fe.url + "/v1/models")[1] + fe.stderr())
if not ok:
    d.finish()

for label, folder, prompts, variants in MODELS:
    assert strict_prefix_free(prompts), "a prompt extends another"
    L, KVH, HD, _ = d.model_kv_shape(folder)
    layout = f"L{L}-KV{KVH}x{HD}-B{BLOCK}-f32"
    bb = 2 * L * BLOCK * KVH * HD * 4
    plan = worked_out(prompts)
    shorts = sum(1 for _, ids in prompts if len(ids) < 2)
    d.check(f"{label}: the prompts reuse blocks on both sides",
            sum(r for r, _, _ in plan) >= 8 and sum(h for _, _, h in plan) >= 8 and
            min(len(ids) for _, ids in prompts) <= 3 and
            max(len(ids) for _, ids in prompts) >= 200, f"{plan}")

    ref = workers[label, "ref"]
    want = [complete(f"{label}-ref", p) for p, _ in prompts]
    d.check(f"{label}: the agg worker answers every prompt, its prompt_tokens as tokenized "
            "here", all(not isinstance(a, str) and a[4]["prompt_tokens"] == len(ids)
                        for a, (_, ids) in zip(want, prompts)),
            [(a, len(ids)) for a, (_, ids) in zip(want, prompts)
             if isinstance(a, str) or a[4]["prompt_tokens"] != len(ids)][:2])
    d.check(f"{label}: the agg worker's prefix hits are as worked out",
            wm(ref, "dyn_worker_prefix_cache_hit_tokens_total") ==
            BLOCK * sum(h for _, _, h in plan),
            f"{wm(ref, 'dyn_worker_prefix_cache_hit_tokens_total')} vs "
            f"{BLOCK * sum(h for _, _, h in plan)}")

    for t in transports:
        pre, dec = workers[label, t]
        name = f"{label}/{t}"
        kv = d.instance_meta(pre).get("kv", {})
        d.check(f"{name}: the prefill worker's record gives the layout and the transport",
                kv.get("layout") == layout and kv.get("block_size") == BLOCK and
                kv.get("ucx") is (t == "ucx"), f"{kv} vs {layout}")
        before = decisions()
        got = [complete(f"{label}-{t}", p) for p, _ in prompts]
        after = decisions()
        bad = [(i, differs(g, w)) for i, (g, w) in enumerate(zip(got, want)) if differs(g, w)]
        d.check(f"{name}: {len(prompts)} greedy answers equal the agg worker's token for "
                "token, logprobs within 1e-5", not bad, bad[:2])
        cached = [None if isinstance(g, str) else g[4]["prompt_tokens_details"]["cached_tokens"]
                  for g in got]
        d.check(f"{name}: cached_tokens are the decode worker's reused blocks",
                cached == [BLOCK * r for r, _, _ in plan], f"{cached} vs {plan}")
        d.check(f"{name}: every request was prefilled remotely",
                after["remote"] - before["remote"] == len(prompts) and
                all(after[k] == before[k] for k in after if k != "remote") and
                not any(d.metric(fmetrics(), "dyn_frontend_remote_prefill_failures_total",
                                 cause=c) for c in ("error", "timeout", "no_kv_source")),
                f"{before} -> {after}")
        d.check(f"{name}: the decode worker took every prompt's KV from the prefill worker",
                wm(dec, "dyn_worker_prefill_total", where="remote") == len(prompts) - shorts and
                wm(dec, "dyn_worker_prefill_total", where="local") == shorts and
                wm(dec, "dyn_worker_kv_transfers_total", direction="in", result="ok") ==
                len(prompts) - shorts and
                wm(dec, "dyn_worker_kv_transfers_total", direction="in", result="failed") == 0 and
                wm(dec, "dyn_worker_kv_fallbacks_total") == 0 and
                wm(pre, "dyn_worker_requests_total") == len(prompts),
                d.sys_metrics(dec)[-2500:])
        want_bytes = bb * sum(f for _, f, _ in plan)
        d.check(f"{name}: the bytes fetched and lent are the blocks not cached on the decode "
                f"worker ({want_bytes} bytes)",
                wm(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") == want_bytes and
                wm(pre, "dyn_worker_kv_transfer_bytes_total", direction="out") == want_bytes,
                f"in {wm(dec, 'dyn_worker_kv_transfer_bytes_total', direction='in')} out "
                f"{wm(pre, 'dyn_worker_kv_transfer_bytes_total', direction='out')}")
        d.check(f"{name}: prefix hits on the decode and on the prefill worker as worked out",
                wm(dec, "dyn_worker_prefix_cache_hit_tokens_total") ==
                BLOCK * sum(r for r, _, _ in plan) and
                wm(pre, "dyn_worker_prefix_cache_hit_tokens_total") ==
                BLOCK * sum(h for _, _, h in plan),
                f"decode {wm(dec, 'dyn_worker_prefix_cache_hit_tokens_total')} prefill "
                f"{wm(pre, 'dyn_worker_prefix_cache_hit_tokens_total')} plan {plan}")
        d.check(f"{name}: the prefill worker holds no KV afterwards",
                d.wait_until(lambda: wm(pre, "dyn_worker_kv_holds") == 0, timeout=5),
                f"holds {wm(pre, 'dyn_worker_kv_holds')}, expired "
                f"{wm(pre, 'dyn_worker_kv_hold_expired_total')}")

    # The same prompts with another opening, 8 at a time: fetches of
    # shared blocks race one another on the decode worker.
    want_v = [complete(f"{label}-ref", p) for p, _ in variants]
    for t in transports:
        pre, dec = workers[label, t]
        name = f"{label}/{t}"
        before, fb0 = decisions(), wm(dec, "dyn_worker_kv_fallbacks_total")
        in0 = wm(dec, "dyn_worker_kv_transfer_bytes_total", direction="in")
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda p: complete(f"{label}-{t}", p[0]), variants))
        after = decisions()
        bad = [(i, differs(g, w)) for i, (g, w) in enumerate(zip(got, want_v)) if differs(g, w)]
        d.check(f"{name}: {len(variants)} requests at once answer as the agg worker, all "
                "remote, no fallback",
                not bad and after["remote"] - before["remote"] == len(variants) and
                wm(dec, "dyn_worker_kv_fallbacks_total") == fb0 and
                wm(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") > in0 and
                d.wait_until(lambda: wm(pre, "dyn_worker_kv_holds") == 0, timeout=5),
                f"{bad[:2]} {before} -> {after}, holds {wm(pre, 'dyn_worker_kv_holds')}")

# A prefill worker of the same layout but other (random) weights: the
# answers change, so the decode worker really computes with the KV it
# fetched (one that prefilled the prompt itself would answer as the agg
# worker does).
if stok:
    label, prompts = "stories", story_prompts(stok)
    odd = (worker(d.MODEL, "stories-odd", "prefill", "tcp", ["--load-format", "dummy"]),
           worker(d.MODEL, "stories-odd", "decode", "tcp"))
    ok = d.wait_until(lambda: d.metric(fmetrics(), "dyn_frontend_workers", model="stories-odd",
                                       role="prefill") == 1, timeout=30)
    want = [complete("stories-ref", p) for p, _ in prompts]
    got = [complete("stories-odd", p) for p, _ in prompts]
    changed = sum(1 for g, w in zip(got, want) if differs(g, w))
    d.check("a prefill worker of other weights changes the answers: the fetched KV is used",
            ok and changed >= len(prompts) - 2 and
            wm(odd[1], "dyn_worker_prefill_total", where="remote") == len(prompts) and
            wm(odd[1], "dyn_worker_kv_fallbacks_total") == 0,
            f"{changed} of {len(prompts)} answers changed")

    # Prompt logprobs need every prompt position's logits where the request
    # decodes: no remote prefill, so the odd prefill worker changes nothing.
    def scored(model, prompt):
        status, a = d.post_json(fe.url + "/v1/completions",
                                {"model": model, "prompt": prompt, "max_tokens": 4,
                                 "temperature": 0, "prompt_logprobs": 2})
        return (a["choices"][0]["text"], a["choices"][0]["prompt_logprobs"]) \
            if status == 200 else f"HTTP {status}: {a}"

    before = decisions()
    ref_s, odd_s = scored("stories-ref", prompts[4][0]), scored("stories-odd", prompts[4][0])
    after = decisions()

    def lps_close(a, b):
        return len(a) == len(b) and a[0] is None is b[0] and all(
            x.keys() == y.keys() and all(abs(x[k]["logprob"] - y[k]["logprob"]) <= 1e-5 and
                                         x[k]["rank"] == y[k]["rank"] for k in x)
            for x, y in zip(a[1:], b[1:]))

    d.check("prompt_logprobs: prefilled where it decodes (no remote step), as the agg worker",
            not isinstance(odd_s, str) and not isinstance(ref_s, str) and
            odd_s[0] == ref_s[0] and lps_close(odd_s[1], ref_s[1]) and
            len(odd_s[1]) == len(prompts[4][1]) and after["remote"] == before["remote"],
            f"{str(odd_s)[:200]} vs {str(ref_s)[:200]}; {before} -> {after}")

d.check("no worker died", all(p.p.poll() is None for p in d.procs),
        [p.stderr() for p in d.procs if p.p.poll() is not None][:1])
d.finish()
