"""kv_tiers - the KV cache tiers through `dyn serve` (dyn-serve(1) KV CACHE
TIERS), on stories260K with F32 K/V and a four-block pool (64 tokens), so
that prompt B evicts all of prompt A's cached blocks.

Reference, independent of the tiers: a worker without tiers and a large
pool answering A twice, the second time from its G1 prefix cache (48
tokens, the same chunking as an onboarded prefix): tokens and logprobs of
A served from G2, from G3 after a worker restart, and from G4 written by
another worker must equal it exactly (blocks move bit for bit); greedy
tokens equal those of A computed from scratch.  Metrics count the blocks
read back per tier; the startup line names the tiers; a G3 directory that
cannot be made is one warning and a still-correct answer, as is a G3
on a full disk (a tiny tmpfs: skipped where mounting is not allowed).
"""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

BASE = ["--engine", "builtin", "--threads", "1", "--kv-cache-dtype", "f32"]


def worker(extra, env=None):
    w = d.Proc(["serve", "--model", d.MODEL, "--system-port", "0", "--lease-ttl", "3000"] +
               BASE + list(extra), r"instance ([0-9a-f]{16}) .* system port (\d+)", env=env)
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


def call(w, ids, **extra):
    body = {"token_ids": ids, "sampling": {"temperature": 0},
            "stop": {"max_tokens": 12, "ignore_eos": True}, "logprobs": 0, **extra}
    p = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id,
                        "--timeout", "60", "dyn/backend/generate", json.dumps(body)],
                       capture_output=True, text=True, timeout=90)
    frames = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    out, lps = [], []
    for f in frames:
        out += f.get("token_ids", [])
        lps += [lp["logprob"] for lp in f.get("logprobs", [])]
    if "prompt_logprobs" in extra:
        return out, lps, sum(len(f.get("prompt_logprobs", [])) for f in frames)
    return out, lps


def metric(w, name, **labels):
    return d.sys_metric(w, name, **labels)


def small(extra, env=None):
    return worker(["--kv-cache-tokens", "64"] + list(extra), env)


def main():
    rng = random.Random(19)
    vocab = d.model_kv_shape(d.MODEL)[3]
    a = [1] + [rng.randrange(3, vocab) for _ in range(48)]	# 3 blocks + 1 token
    b = [1] + [rng.randrange(3, vocab) for _ in range(48)]
    tmp = d.tmp
    g3, g4 = os.path.join(tmp, "g3"), os.path.join(tmp, "g4")

    ref = worker([])
    scratch = call(ref, a)
    want = call(ref, a)
    d.check("reference: the second A is a G1 hit with 12 tokens",
            len(want[0]) == 12 and want[0] == scratch[0], f"{want} {scratch}")
    ref.stop()

    w = small(["--kv-host-cache-gb", "0.01"], env={"DYN_LOG": "info"})
    call(w, a)
    call(w, b)
    got = call(w, a)
    d.check("G2: A after eviction equals the G1 hit bit for bit", got == want, f"{got} {want}")
    d.check("G2: 3 blocks read back, counted on tier G2",
            metric(w, "dyn_worker_kv_tier_onboards_total", tier="G2") == 3,
            d.sys_metrics(w)[-1500:])
    d.check("the startup line names the tiers", "KV tiers G2 host" in w.stderr(), w.stderr())
    call(w, b)      # A's blocks leave G1 again
    n0 = metric(w, "dyn_worker_kv_tier_onboards_total", tier="G2")
    got = call(w, a, prompt_logprobs=0)
    n1 = metric(w, "dyn_worker_kv_tier_onboards_total", tier="G2")
    d.check("prompt logprobs: every prompt position computed, nothing read back from G2",
            got[0] == scratch[0] and got[2] == len(a) - 1 and n1 == n0,
            f"{got[0]} vs {scratch[0]}, {got[2]} entries, {n1 - n0} blocks read back")
    w.stop()

    w = small(["--kv-disk-cache-dir", g3])
    call(w, a)
    call(w, b)
    d.check("G3: A's blocks written to disk", d.wait_until(
        lambda: metric(w, "dyn_worker_kv_tier_offloads_total", tier="G3") >= 3))
    w.stop()
    w = small(["--kv-disk-cache-dir", g3])
    d.check("G3: a restarted worker finds its blocks",
            metric(w, "dyn_worker_kv_tier_blocks", tier="G3") >= 3)
    got = call(w, a)
    d.check("G3: A after a restart equals the G1 hit", got == want, f"{got} {want}")
    d.check("G3: read back from G3", metric(w, "dyn_worker_kv_tier_onboards_total",
                                            tier="G3") == 3)
    w.stop()

    w1, w2 = small(["--kv-shared-cache-dir", g4]), small(["--kv-shared-cache-dir", g4])
    call(w1, a)
    call(w1, b)
    d.check("G4: worker 1 wrote A's blocks", d.wait_until(
        lambda: metric(w1, "dyn_worker_kv_tier_offloads_total", tier="G4") >= 3))
    got = call(w2, a)
    d.check("G4: worker 2 answers A from worker 1's blocks, equal to the G1 hit",
            got == want and metric(w2, "dyn_worker_kv_tier_onboards_total", tier="G4") == 3,
            f"{got} {want}")
    w1.stop()
    w2.stop()

    w = small(["--kv-host-cache-gb", "0.001", "--kv-disk-cache-dir", "/proc/version/g3"])
    call(w, a)
    call(w, b)
    got = call(w, a)
    d.check("a G3 that cannot be made: one warning, answers from G2 still right",
            w.stderr().count("G3 (local disk)") == 1 and got == want, w.stderr())
    w.stop()
    full_disk(a, b, want)
    d.finish()


def close(got, want, tol=1e-4):
    return got[0] == want[0] and len(got[1]) == len(want[1]) and \
        all(abs(x - y) <= tol for x, y in zip(got[1], want[1]))


def full_disk(a, b, want):
    """G3 on a tmpfs that holds one block, its limit set far above that:
    the writes past the first fail (no space), once warned; A, evicted
    from a two-block G2, is still answered right, and again after."""
    mnt = os.path.join(d.tmp, "full")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", mnt],
                       capture_output=True, text=True)
    if p.returncode:
        d.skip("G3 on a full disk", f"cannot mount a small tmpfs: {p.stderr.strip()}")
        return
    try:
        w = small(["--kv-host-cache-gb", "0.00004", "--kv-disk-cache-dir", mnt,
                   "--kv-disk-cache-gb", "1"])
        call(w, a)
        call(w, b)
        d.wait_until(lambda: "G3 (local disk) write" in w.stderr(), timeout=10)
        got, again = call(w, a), call(w, a)
        err = w.stderr()
        d.check("G3 on a full disk: one warning naming the lack of space",
                err.count("G3 (local disk) write") == 1 and "No space left" in err, err)
        # blocks lost to the full disk are recomputed, maybe in other
        # chunks than the reference's prefill: the same tokens, logprobs
        # equal to float rounding (restored blocks above are bit-exact)
        d.check("G3 on a full disk: A still answered right, twice",
                close(got, want) and close(again, want), f"{got} {again} {want}")
        d.check("G3 on a full disk: no partial files left in it",
                not [f for f in os.listdir(mnt) if f.endswith(".tmp")], str(os.listdir(mnt)))
        w.stop()
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


if __name__ == "__main__":
    main()
