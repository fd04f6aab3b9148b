#!/usr/bin/env python3
"""tokenize_block_hashes.py - `dyn tokenize --block-hashes` (the operator's
view of KV block hashes) against an independent computation with the xxhash
package from DESIGN.md's definition: local hash = XXH3-64 (seed 1337) over
the block's ids as little-endian u32; sequence hash of block 0 = its local
hash, of block i = XXH3-64 (seed 1337) over le64(seq[i-1]) || le64(local[i]).
Covers --ids input, text input through the model's tokenizer (ids taken
from plain `dyn tokenize`), --block-size and DYN_BLOCK_SIZE, and usage
errors."""
import os
import random
import struct
import subprocess
import sys

import xxhash

SEED = 1337
DYN = os.environ.get("DYN_BIN", "./dyn")
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "models", "stories260K"))
failed = 0


def check(name, ok, why=""):
    global failed
    if ok:
        print("PASS: tokenize_block_hashes/%s" % name)
    else:
        failed += 1
        print("FAIL: tokenize_block_hashes/%s: %s" % (name, str(why)[:400]))


def reference(tokens, bs):
    out, parent = [], None
    for b in range(len(tokens) // bs):
        blk = tokens[b * bs:(b + 1) * bs]
        local = xxhash.xxh3_64_intdigest(struct.pack("<%dI" % bs, *blk), seed=SEED)
        seq = local if parent is None else xxhash.xxh3_64_intdigest(
            struct.pack("<QQ", parent, local), seed=SEED)
        out.append("%d\t%016x\t%016x" % (b, local, seq))
        parent = seq
    return out


def dyn(args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([DYN, "tokenize"] + args, capture_output=True, text=True, env=e)


rng = random.Random(9)
cases = [
    ("ids: one block", list(range(16)), 16),
    ("ids: 3 full blocks and a tail", [rng.randrange(150000) for _ in range(50)], 16),
    ("ids: large ids", [2**31 - 1, 0, 151643, 7] * 8, 16),
    ("ids: block size 4", [rng.randrange(512) for _ in range(23)], 4),
    ("ids: block size 64", [rng.randrange(32000) for _ in range(200)], 64),
    ("ids: shorter than a block prints nothing", [1, 2, 3], 16),
]
for name, toks, bs in cases:
    r = dyn(["--ids", ",".join(map(str, toks)), "--block-hashes", "--block-size", str(bs)])
    got = r.stdout.splitlines()
    want = reference(toks, bs)
    check(name, r.returncode == 0 and got == want, (r.returncode, r.stderr, got[:2], want[:2]))

toks = [rng.randrange(1000) for _ in range(40)]
r = dyn(["--ids", " ".join(map(str, toks)), "--block-hashes"], {"DYN_BLOCK_SIZE": "8"})
check("ids separated by spaces, DYN_BLOCK_SIZE", r.returncode == 0 and
      r.stdout.splitlines() == reference(toks, 8), (r.stderr, r.stdout[:200]))
r = dyn(["--ids", ",".join(map(str, toks)), "--block-hashes"])
check("default block size is 16", r.stdout.splitlines() == reference(toks, 16), r.stdout[:200])

if os.path.isdir(MODEL):
    text = ("Once upon a time, there was a little girl named Lily. She loved to play "
            "outside in the sun with her friends and her dog.")
    plain = dyn([MODEL, "--text", text])
    ids = [int(x) for x in plain.stdout.split()]
    for bs in (4, 16):
        r = dyn([MODEL, "--text", text, "--block-hashes", "--block-size", str(bs)])
        check("text through the tokenizer, block size %d" % bs,
              r.returncode == 0 and len(ids) >= bs and
              r.stdout.splitlines() == reference(ids, bs), (r.stderr, r.stdout[:200]))
    r = subprocess.run([DYN, "tokenize", MODEL, "--block-hashes", "--block-size", "4"],
                       input=text, capture_output=True, text=True)
    check("text from stdin", r.returncode == 0 and r.stdout.splitlines() == reference(ids, 4),
          r.stderr)
else:
    print("SKIP: tokenize_block_hashes/text: no model at %s" % MODEL)

for name, args in [
    ("bad id is a usage error", ["--ids", "1,x,3", "--block-hashes"]),
    ("--ids with --text is a usage error", ["--ids", "1", "--text", "a"]),
    ("--block-hashes with --jsonl is a usage error", ["m", "--block-hashes", "--jsonl"]),
    ("block size 0 is a usage error", ["--ids", "1", "--block-hashes", "--block-size", "0"]),
]:
    r = dyn(args)
    check(name, r.returncode == 2 and r.stderr.startswith("dyn tokenize") and
          not r.stdout, (r.returncode, r.stderr, r.stdout))
sys.exit(1 if failed else 0)
