#!/usr/bin/env python3
"""block_hash.py - dyn's KV block hashes against an independent computation
with the xxhash package (XXH3-64, seed 1337, DESIGN.md's chaining), for a
few token sequences and block sizes.  dyn's side is printed by the unit-test
binary ($BUILD/test/test_engine hash BLOCK_SIZE IDS)."""
import os
import random
import struct
import subprocess
import sys

import xxhash

SEED = 1337
BUILD = os.environ.get("BUILD", "build/rel")
BIN = os.path.join(BUILD, "test", "test_engine")


def reference(tokens, bs):
    out, parent = [], None
    for b in range(len(tokens) // bs):
        blk = tokens[b * bs:(b + 1) * bs]
        local = xxhash.xxh3_64_intdigest(struct.pack("<%dI" % bs, *blk), seed=SEED)
        seq = local if parent is None else xxhash.xxh3_64_intdigest(
            struct.pack("<QQ", parent, local), seed=SEED)
        out.append((local, seq))
        parent = seq
    return out


def dyn(tokens, bs):
    r = subprocess.run([BIN, "hash", str(bs), ",".join(map(str, tokens))],
                       capture_output=True, text=True, check=True)
    return [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()]


rng = random.Random(5)
cases = [
    ("16 tokens, one block", list(range(16)), 16),
    ("50 tokens, 3 full blocks and a tail", [rng.randrange(150000) for _ in range(50)], 16),
    ("large ids", [2**31 - 1, 0, 151643, 7] * 8, 16),
    ("block size 4", [rng.randrange(512) for _ in range(23)], 4),
    ("block size 64", [rng.randrange(32000) for _ in range(200)], 64),
    ("shorter than a block: no hashes", [1, 2, 3], 16),
]
failed = 0
for name, toks, bs in cases:
    want, got = reference(toks, bs), dyn(toks, bs)
    if want == got:
        print("PASS: block_hash/%s" % name)
    else:
        failed += 1
        print("FAIL: block_hash/%s: dyn %s, xxhash %s" % (name, got[:2], want[:2]))
sys.exit(1 if failed else 0)
