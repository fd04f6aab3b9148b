"""gguf_errors.py - corrupt, truncated and unsupported GGUF files get a
clear error, never a crash, a hang or a huge allocation.

Each file is given to `dyn model info --tensors` (which parses, maps and
checks every tensor) and `dyn run`: the exit status must be 1 (an error,
not a signal), stderr must name the file and what is wrong, and it must
finish within the timeout.  The files: hand-made headers (written here
byte by byte) with a bad magic, versions 1 and 4, counts and lengths far
beyond the file, unknown value types, arrays nested too deep, tensors with
too many dimensions, a zero dimension, an unsupported (Q4_K) or unknown
type, misaligned, overlapping, out-of-file or duplicate tensors, duplicate
keys, a bad general.alignment; and a real stories260K GGUF truncated at
many points, with an unsupported architecture or tokenizer, a tensor
missing or of the wrong shape.  Run under SAN=1 too (make test SAN=1
TEST_FILTER=gguf).
"""
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

TOP = d.TOP
report, dyn = d.check, d.run_offline
STORIES = os.path.normpath(os.path.join(TOP, "..", "shared", "models", "stories260K"))

try:
    import numpy as np
    import gguf
    import ggufw
except ImportError as e:
    d.skip("gguf writer", f"not installed ({e}; test/requirements.txt)")
    d.finish()

U32, STR, ARR = 4, 8, 9


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, payload):
    return s(key) + struct.pack("<I", typ) + payload


def arch(name="llama"):
    return kv("general.architecture", STR, s(name))


def tinfo(name, dims, typ=0, off=0):
    return (s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", x) for x in dims)
            + struct.pack("<IQ", typ, off))


def raw(kvs=(), tensors=(), data=b"", version=3, nt=None, nkv=None, align=32):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if nt is None else nt,
                                len(kvs) if nkv is None else nkv)
    out += b"".join(kvs) + b"".join(tensors)
    out += b"\0" * (-len(out) % align)
    return out + data


def nested(depth):
    v = struct.pack("<IQ", U32, 1) + struct.pack("<I", 7)
    for _ in range(depth):
        v = struct.pack("<IQ", ARR, 1) + v
    return kv("deep", ARR, v)


HANDMADE = [
    ("empty file", b"", "not a GGUF file"),
    ("bad magic", b"GGUX" + raw()[4:], "no \"GGUF\" magic"),
    ("version 1", raw(version=1), "version 1 is not supported"),
    ("version 4", raw(version=4), "version 4 is not supported"),
    ("short header", b"GGUF\x03\x00\x00\x00\x01", "truncated"),
    ("huge metadata count", raw(nkv=1 << 62), "cannot fit"),
    ("huge tensor count", raw([arch()], nt=1 << 40), "cannot fit"),
    ("key length past the end", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 63),
     "truncated"),
    ("string value past the end", raw([kv("general.architecture", STR, struct.pack("<Q", 1 << 40))]),
     "truncated"),
    ("unknown value type", raw([kv("x", 99, b"\0" * 8)]), "unknown value type 99"),
    ("array count past the end", raw([kv("x", ARR, struct.pack("<IQ", U32, 1 << 60))]),
     "truncated"),
    ("string array past the end", raw([kv("x", ARR, struct.pack("<IQ", STR, 1 << 60) + s("a"))]),
     "truncated"),
    ("arrays nested too deep", raw([nested(6)]), "nested more than"),
    ("duplicate key", raw([arch(), arch()]), "appears twice"),
    ("alignment not a power of two", raw([arch(), kv("general.alignment", U32, struct.pack("<I", 3))]),
     "not a power of two"),
    ("5 dimensions", raw([arch()], [tinfo("a", [1, 1, 1, 1, 1])], b"\0" * 32), "5 dimensions"),
    ("zero dimension", raw([arch()], [tinfo("a", [4, 0])], b"\0" * 32), "zero or too large"),
    ("dimension overflow", raw([arch()], [tinfo("a", [1 << 40, 1 << 40])], b"\0" * 32),
     "zero or too large"),
    ("Q4_K tensor", raw([arch()], [tinfo("a", [256], 12)], b"\0" * 160),
     "Q4_K, which dyn does not read"),
    ("unknown tensor type", raw([arch()], [tinfo("a", [4], 200)], b"\0" * 32),
     "unknown type number 200"),
    ("Q8_0 row not whole blocks", raw([arch()], [tinfo("a", [40], 8)], b"\0" * 64),
     "whole number of Q8_0 blocks"),
    ("misaligned tensor", raw([arch()], [tinfo("a", [4], 0, 4)], b"\0" * 64),
     "not a multiple of the alignment"),
    ("tensor past the end", raw([arch()], [tinfo("a", [64], 0, 0)], b"\0" * 32),
     "beyond the end of the data section"),
    ("tensor offset far past the end", raw([arch()], [tinfo("a", [4], 0, 1 << 62)], b"\0" * 32),
     "beyond the end of the data section"),
    ("overlapping tensors", raw([arch()], [tinfo("a", [16]), tinfo("b", [16], 0, 32)], b"\0" * 96),
     "overlap"),
    ("duplicate tensor", raw([arch()], [tinfo("a", [8]), tinfo("a", [8], 0, 32)], b"\0" * 64),
     "appears twice"),
    ("no architecture", raw(), "no general.architecture"),
    ("unsupported architecture", raw([arch("bert")]), "architecture 'bert' is not supported"),
    ("architecture of the wrong type", raw([kv("general.architecture", U32, b"\0" * 4)]),
     "expected a string"),
    ("no hyperparameters", raw([arch()]), "llama.embedding_length is missing"),
]


def expect_error(name, path, phrase):
    for cmd in (("model", "info", "--tensors", path), ("run", path, "--prompt", "hi")):
        p = dyn(*cmd, timeout=60)
        err = p.stderr.strip()
        ok = p.returncode == 1 and phrase in err and path in err and "Sanitizer" not in err
        report(f"{name}: dyn {cmd[0]} fails clearly", ok,
               f"rc {p.returncode}, want {phrase!r}; stderr {err[-300:]!r}")


def stories(tmp, name, fmt="F32", drop=None, reshape=None, arch_name=None, tok_model=None):
    with open(os.path.join(STORIES, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(STORIES, "tokenizer_config.json")) as fh:
        tc = json.load(fh)
    t = ggufw.read_safetensors(os.path.join(STORIES, "model.safetensors"))
    if drop:
        del t[drop]
    if reshape:
        t[reshape] = t[reshape][:, :32].copy()
    tok = ggufw.spm_tokenizer(os.path.join(STORIES, "tok512.model"), tc, cfg)
    if tok_model:
        inner = tok

        def tok(w):  # noqa: F811  another model name, the same metadata otherwise
            w.add_tokenizer_model = lambda _: gguf.GGUFWriter.add_tokenizer_model(w, tok_model)
            inner(w)
    path = os.path.join(tmp, name + ".gguf")
    ggufw.write_model(path, cfg, t, fmt, tok)
    if arch_name:  # same length, patched in place
        with open(path, "r+b") as fh:
            b = fh.read()
            i = b.index(b"general.architecture") + len("general.architecture") + 4 + 8
            fh.seek(i)
            fh.write(arch_name.encode())
    return path


def main():
    tmp = tempfile.mkdtemp(prefix="dyn-gguf-errors-")
    try:
        for i, (name, data, phrase) in enumerate(HANDMADE):
            path = os.path.join(tmp, f"h{i}.gguf")
            with open(path, "wb") as fh:
                fh.write(data)
            expect_error(name, path, phrase)
        good = stories(tmp, "good")
        p = dyn("model", "info", "--tensors", good)
        report("the intact stories GGUF loads (so the cuts below are what fails)",
               p.returncode == 0, p.stderr.strip()[-300:])
        with open(good, "rb") as fh:
            whole = fh.read()
        for cut in (3, 20, 100, 3000, len(whole) // 2, len(whole) - 1):
            path = os.path.join(tmp, f"cut{cut}.gguf")
            with open(path, "wb") as fh:
                fh.write(whole[:cut])
            expect_error(f"stories GGUF cut to {cut} bytes", path,
                         "not a GGUF file" if cut < 4 else
                         "beyond the end" if cut > 100000 else "truncated")
        expect_error("a tensor missing", stories(tmp, "missing",
                     drop="model.layers.2.mlp.up_proj.weight"),
                     "model.layers.2.mlp.up_proj.weight is missing")
        expect_error("a tensor of the wrong shape", stories(tmp, "shape",
                     reshape="model.layers.0.mlp.gate_proj.weight"),
                     "model.layers.0.mlp.gate_proj.weight has shape [172, 32], but the GGUF "
                     "metadata implies [172, 64]")
        expect_error("an unsupported architecture", stories(tmp, "arch", arch_name="gptj5"),
                     "architecture 'gptj5' is not supported")
        expect_error("an unsupported tokenizer model", stories(tmp, "tokmodel", tok_model="bert"),
                     "tokenizer.ggml.model 'bert' is not supported")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d.finish()


if __name__ == "__main__":
    main()
