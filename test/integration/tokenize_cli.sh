#!/bin/sh
# tokenize_cli.sh - "dyn tokenize" and "dyn detokenize" as an operator uses
# them, checked against Hugging Face tokenizers (the pinned version in the
# venv, $PYTHON): every example of man/dyn-tokenize.1 and
# man/dyn-detokenize.1 prints exactly what the man page shows and what HF
# computes; --text, stdin (its trailing newline included), the --pieces
# format, ids as arguments and from a pipe, --stream (whose pieces come
# out as the ids arrive, before stdin ends) and the documented exit
# statuses and messages of the error cases.  The expected ids and texts
# come from HF (and block hashes from the xxhash module), never from dyn.
set -u
. "$(dirname "$0")/lib.sh"

MODELS=$TOP/../shared/models
QWEN=$MODELS/qwen3-0.6b-shape
TINY=$MODELS/tinyllama-1.1b-shape
STORIES=$MODELS/stories260K
same() { cmp -s "$1" "$2"; }

for m in "$QWEN" "$TINY" "$STORIES"; do
	if [ ! -f "$m/tokenizer.json" ]; then
		fail "fixtures" "$m/tokenizer.json missing"
		finish
	fi
done
if ! "$PYTHON" -c 'import tokenizers, xxhash' 2>/dev/null; then
	if [ -n "${CI:-}" ]; then fail "oracle" "HF tokenizers/xxhash not importable by $PYTHON (make venv)"
	else skip "oracle" "HF tokenizers/xxhash not importable by $PYTHON (make venv)"; fi
	finish
fi

# The oracle: HF tokenizers, plus the man page's examples.
cat >"$TMP/hf.py" <<'EOF'
import json, os, select, struct, subprocess, sys, time
from tokenizers import Tokenizer

def load(model):
    return Tokenizer.from_file(os.path.join(model, "tokenizer.json"))

def deltas(tok, ids, skip):
    """What an incremental decoder must emit: the growth of HF's decode of
    each prefix (valid where every prefix decodes to a prefix of the next,
    as for the ids used here)."""
    out, prev = [], ""
    for i in range(1, len(ids) + 1):
        cur = tok.decode(ids[:i], skip_special_tokens=skip)
        assert cur.startswith(prev), (ids, prev, cur)
        if cur != prev:
            out.append(cur[len(prev):])
        prev = cur
    return out

def pieces(tok, text, special=True):
    enc = tok.encode(text, add_special_tokens=special)
    return "".join(f"{i}\t{json.dumps(t, ensure_ascii=False)}\n" for i, t in zip(enc.ids, enc.tokens))

def block_hashes(ids, bs, seed=1337):
    import xxhash
    out, parent = "", None
    for b in range(len(ids) // bs):
        local = xxhash.xxh3_64_intdigest(struct.pack("<%dI" % bs, *ids[b * bs:(b + 1) * bs]), seed=seed)
        seq = local if parent is None else xxhash.xxh3_64_intdigest(struct.pack("<QQ", parent, local), seed=seed)
        out += f"{b}\t{local:016x}\t{seq:016x}\n"
        parent = seq
    return out

def examples(man):
    """(command, output) pairs from the .Bd -literal blocks of a man page."""
    text, inside, res = open(man, encoding="utf-8").read().split("\n"), False, []
    unesc = lambda s: s.replace("\\-", "-").replace("\\[u2581]", "\u2581").replace("\\e", "\\")
    for line in text:
        if line.startswith(".Bd -literal"):
            inside = True
        elif line.startswith(".Ed"):
            inside = False
        elif inside:
            line = unesc(line)
            if line.startswith("$ "):
                res.append([line[2:], ""])
            elif res and res[-1][0].endswith("|") and not res[-1][1]:
                res[-1][0] += " " + line.strip()
            elif res:
                res[-1][1] += line + "\n"
    return res

def hf_example(cmd, qwen, tiny):
    """HF's output for each man page example; None for one this test does
    not know (then the test must be taught it)."""
    q, t = load(qwen), load(tiny)
    known = {
        "dyn tokenize ./qwen3 --text 'Hello world'":
            lambda: " ".join(map(str, q.encode("Hello world").ids)) + "\n",
        "dyn tokenize ./tinyllama --pieces --text 'Hi!'":
            lambda: pieces(t, "Hi!"),
        "printf '\"a\"\\n\"b c\"\\n' | dyn tokenize ./qwen3 --jsonl":
            lambda: "".join(json.dumps(q.encode(s).ids, separators=(",", ":")) + "\n" for s in ("a", "b c")),
        "dyn tokenize --ids 0,1,2,3,4,5,6,7 --block-hashes --block-size 4":
            lambda: block_hashes(list(range(8)), 4),
        "dyn detokenize ./qwen3 9707 1879":
            lambda: q.decode([9707, 1879]) + "\n",
        "dyn tokenize ./tinyllama --text 'Hi!' | dyn detokenize ./tinyllama --skip-special-tokens":
            lambda: t.decode(t.encode("Hi!").ids, skip_special_tokens=True) + "\n",
        "echo '[9707, 1879, 0]' | dyn detokenize ./qwen3 --jsonl --stream":
            lambda: json.dumps(deltas(q, [9707, 1879, 0], False), ensure_ascii=False, separators=(",", ":")) + "\n",
    }
    f = known.get(cmd)
    return f() if f else None

def stream_driver(dyn, model, ids, timeout=20):
    """Feed dyn detokenize --stream one id per line, waiting for each
    piece before sending the next id: the piece must come while stdin is
    still open.  Prints the pieces as a JSON array."""
    tok = load(model)
    want = deltas(tok, ids, False)
    p = subprocess.Popen([dyn, "detokenize", model, "--stream"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    got, buf = [], b""
    try:
        for i, piece in zip(ids, want):
            p.stdin.write(f"{i}\n".encode())
            p.stdin.flush()
            end = time.monotonic() + timeout
            while buf.decode("utf-8", "replace") != piece:
                left = end - time.monotonic()
                if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                    print(json.dumps({"error": f"no piece for id {i} within {timeout}s",
                                      "got": got, "pending": buf.decode("utf-8", "replace")}))
                    return
                b = os.read(p.stdout.fileno(), 4096)
                if not b:
                    print(json.dumps({"error": "EOF", "got": got}))
                    return
                buf += b
            got.append(buf.decode())
            buf = b""
        p.stdin.close()
        rest = p.stdout.read().decode()
        print(json.dumps({"pieces": got, "rest": rest, "rc": p.wait(timeout)}, ensure_ascii=False))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

op = sys.argv[1]
if op == "examples":          # MAN QWEN TINY OUTDIR: N.cmd N.man N.hf
    man, qwen, tiny, outdir = sys.argv[2:6]
    for n, (cmd, out) in enumerate(examples(man)):
        ref = hf_example(cmd, qwen, tiny)
        run = cmd.replace("./qwen3", qwen).replace("./tinyllama", tiny).replace("dyn ", '"$DYN_BIN" ')
        open(f"{outdir}/{n}.cmd", "w").write(cmd + "\n" + run + "\n")
        open(f"{outdir}/{n}.man", "w").write(out)
        if ref is not None:
            open(f"{outdir}/{n}.hf", "w").write(ref)
elif op == "ids":             # MODEL SPECIAL(0/1) < text
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    print(" ".join(map(str, load(sys.argv[2]).encode(text, add_special_tokens=sys.argv[3] == "1").ids)))
elif op == "pieces":          # MODEL < text
    sys.stdout.write(pieces(load(sys.argv[2]), sys.stdin.buffer.read().decode("utf-8", "replace")))
elif op == "decode":          # MODEL SKIP(0/1) IDS...
    ids = [int(x) for x in sys.argv[4:]]
    sys.stdout.write(load(sys.argv[2]).decode(ids, skip_special_tokens=sys.argv[3] == "1") + "\n")
elif op == "stream":          # DYN MODEL IDS...
    stream_driver(sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4:]])
EOF
hf() { "$PYTHON" "$TMP/hf.py" "$@"; }

# ---- the man pages' examples ----------------------------------------------------
for page in dyn-tokenize dyn-detokenize; do
	mkdir -p "$TMP/ex-$page"
	hf examples "$TOP/man/$page.1" "$QWEN" "$TINY" "$TMP/ex-$page"
	n=0
	while [ -f "$TMP/ex-$page/$n.cmd" ]; do
		d=$TMP/ex-$page
		cmd=$(sed -n 1p "$d/$n.cmd" | tr -d '\\')	# (echo in names would expand \n)
		if [ ! -f "$d/$n.hf" ]; then
			fail "$page example $n" "no HF reference for '$cmd' (teach tokenize_cli.sh)"
		else
			DYN_BIN=$DYN_BIN sh -c "$(sed -n 2p "$d/$n.cmd")" >"$d/$n.out" 2>"$d/$n.err"; rc=$?
			check "$page example: $cmd" \
				'[ $rc -eq 0 ] && same "$d/$n.out" "$d/$n.hf" && same "$d/$n.out" "$d/$n.man"' ||
				{ echo "example $n: rc $rc; got, HF, man page:"; cat "$d/$n.out" "$d/$n.err" \
					"$d/$n.hf" "$d/$n.man"; } >&2
		fi
		n=$((n + 1))
	done
	check "$page: the man page has examples" '[ $n -ge 3 ]'
done

# ---- tokenize -------------------------------------------------------------------
text='Hello <|im_end|> wörld 😀  "quoted" \back  12345'
"$DYN_BIN" tokenize "$QWEN" --text "$text" >"$TMP/out"; rc=$?
printf '%s' "$text" | hf ids "$QWEN" 1 >"$TMP/want"
check "tokenize --text (special token, emoji, spaces) = HF" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'

"$DYN_BIN" tokenize "$TINY" --no-special-tokens --text "$text" >"$TMP/out"; rc=$?
printf '%s' "$text" | hf ids "$TINY" 0 >"$TMP/want"
check "tokenize --no-special-tokens = HF add_special_tokens=False" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'

printf 'Once upon a time\n' | "$DYN_BIN" tokenize "$STORIES" >"$TMP/out"; rc=$?
printf 'Once upon a time\n' | hf ids "$STORIES" 1 >"$TMP/want"
printf 'Once upon a time' | hf ids "$STORIES" 1 >"$TMP/want-nonl"
check "tokenize stdin, its trailing newline included" \
	'[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want" && ! same "$TMP/want" "$TMP/want-nonl"'

ptext='a "q" \ é 你	tab'
"$DYN_BIN" tokenize "$STORIES" --pieces --text "$ptext" >"$TMP/out"; rc=$?
printf '%s' "$ptext" | hf pieces "$STORIES" >"$TMP/want"
check "--pieces: id, tab, JSON string per line (byte fallback, quotes, tab)" \
	'[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'

# ---- detokenize -----------------------------------------------------------------
ids=$(printf '%s' "$text" | hf ids "$QWEN" 1)
# shellcheck disable=SC2086  # one argument per id
"$DYN_BIN" detokenize "$QWEN" $ids >"$TMP/out"; rc=$?
# shellcheck disable=SC2086
hf decode "$QWEN" 0 $ids >"$TMP/want"
check "detokenize IDS as arguments = HF decode" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
"$DYN_BIN" detokenize "$QWEN" "[$(echo $ids | tr ' ' ',')]" >"$TMP/out"; rc=$?
check "detokenize one argument [a,b,...]" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
"$DYN_BIN" tokenize "$QWEN" --text "$text" | "$DYN_BIN" detokenize "$QWEN" >"$TMP/out"; rc=$?
check "detokenize ids from a pipe" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
# shellcheck disable=SC2086
"$DYN_BIN" detokenize "$QWEN" --skip-special-tokens $ids >"$TMP/out"; rc=$?
# shellcheck disable=SC2086
hf decode "$QWEN" 1 $ids >"$TMP/want-skip"
check "detokenize --skip-special-tokens = HF" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want-skip"'

# ids HF accepts (any u32) but no tokenizer knows are skipped
"$DYN_BIN" detokenize "$QWEN" 9707 4294967295 2147483648 151669 1879 >"$TMP/out"; rc=$?
hf decode "$QWEN" 0 9707 4294967295 2147483648 151669 1879 >"$TMP/want"
check "unknown ids up to 2^32-1 are skipped, as HF does" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'

# --stream: the same text, from arguments and from stdin (ids over many lines)
# shellcheck disable=SC2086
"$DYN_BIN" detokenize "$QWEN" --stream $ids >"$TMP/out"; rc=$?
# shellcheck disable=SC2086
hf decode "$QWEN" 0 $ids >"$TMP/want-args"
check "detokenize --stream IDS = HF decode" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want-args"'
echo $ids | tr ' ' '\n' | "$DYN_BIN" detokenize "$QWEN" --stream >"$TMP/out"; rc=$?
check "detokenize --stream, one id per stdin line = HF decode" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want-args"'
# stories260K: bytes of one character over several tokens, and a byte run
# that is not valid UTF-8 as a whole (one U+FFFD per byte in HF)
for sids in "198 172 258" "33 198" "13 198 172 29 4 198"; do
	# shellcheck disable=SC2086
	echo $sids | tr ' ' '\n' | "$DYN_BIN" detokenize "$STORIES" --stream >"$TMP/out"; rc=$?
	# shellcheck disable=SC2086
	hf decode "$STORIES" 0 $sids >"$TMP/want"
	check "detokenize --stream stories260K $sids = HF decode" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
done

# each piece is printed while stdin is still open (not at EOF)
hf stream "$DYN_BIN" "$QWEN" 9707 1879 11 1879 0 >"$TMP/out" 2>"$TMP/err"
printf '{"pieces": ["Hello", " world", ",", " world", "!"], "rest": "\\n", "rc": 0}\n' >"$TMP/want"
check "--stream prints each piece as its id arrives" 'same "$TMP/out" "$TMP/want"' ||
	cat "$TMP/out" "$TMP/err" >&2

# ---- errors ---------------------------------------------------------------------
err_case() {	# NAME WANT_RC WANT_MESSAGE_PART CMD...
	name=$1 want_rc=$2 want_msg=$3
	shift 3
	"$@" >"$TMP/eout" 2>"$TMP/eerr" </dev/null; rc=$?
	msg=$(cat "$TMP/eerr")
	check "$name: exit $want_rc, '$want_msg'" \
		'[ $rc -eq $want_rc ] && contains "$msg" "$want_msg" && [ ! -s "$TMP/eout" ]'
}
mkdir -p "$TMP/empty" "$TMP/trunc" "$TMP/unigram"
head -c 4000 "$QWEN/tokenizer.json" >"$TMP/trunc/tokenizer.json"
printf '{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}}' \
	>"$TMP/unigram/tokenizer.json"
err_case "missing directory" 1 "nonexistent: No such file" \
	"$DYN_BIN" tokenize "$TMP/nonexistent" --text x
err_case "folder without tokenizer.json" 1 "no tokenizer.json" \
	"$DYN_BIN" detokenize "$TMP/empty" 1
err_case "truncated tokenizer.json" 1 "truncated file" \
	"$DYN_BIN" tokenize "$TMP/trunc" --text x
err_case "Unigram model" 1 "\"Unigram\" models are not supported" \
	"$DYN_BIN" tokenize "$TMP/unigram" --text x
err_case "bad id" 2 "'12x' is not a token id" \
	"$DYN_BIN" detokenize "$QWEN" 9707 12x
err_case "negative id" 2 "'-5' is not a token id" \
	"$DYN_BIN" detokenize "$QWEN" 9707,-5
err_case "id beyond 32 bits" 2 "'4294967296' is not a token id" \
	"$DYN_BIN" detokenize "$QWEN" 4294967296
err_case "tokenize bad flag" 2 "unknown option '--bogus'" \
	"$DYN_BIN" tokenize "$QWEN" --bogus
err_case "detokenize bad flag" 2 "unknown option '--bogus'" \
	"$DYN_BIN" detokenize "$QWEN" --bogus 1
printf '9707\nnope\n' | "$DYN_BIN" detokenize "$QWEN" --stream >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--stream: a bad id on stdin is a usage error (exit 2)" \
	'[ $rc -eq 2 ] && contains "$(cat "$TMP/err")" "line 2"'

# --jsonl: each line must be a JSON array of ids (what json.loads accepts
# as a list of non-negative integers); anything else is a usage error that
# names the line, after the good lines before it were decoded
for bad in '[1,2' '1,2' '[1 2]' '[1,2]]' '[1,2],' '{"a": 1}' '[-1]' '[1.5]' '["1"]' '[[1]]' \
	'[4294967296]' '42' ''; do
	printf '[9707]\n%s\n' "$bad" | "$DYN_BIN" detokenize "$QWEN" --jsonl >"$TMP/out" 2>"$TMP/err"; rc=$?
	check "detokenize --jsonl rejects line 2 '$bad' (exit 2)" \
		'[ $rc -eq 2 ] && contains "$(cat "$TMP/err")" "line 2" && [ "$(cat "$TMP/out")" = "\"Hello\"" ]'
done
printf '[9707, 1879]\n [ ]\n[4294967295]\n' | "$DYN_BIN" detokenize "$QWEN" --jsonl >"$TMP/out" 2>"$TMP/err"; rc=$?
check "detokenize --jsonl takes spaced and empty arrays and 32-bit ids" \
	'[ $rc -eq 0 ] && [ "$(cat "$TMP/out")" = "$(printf "\"Hello world\"\n\"\"\n\"\"")" ]'
# a tokenizer.json that is valid JSON but not an object names its type
mkdir -p "$TMP/num"
echo 42 >"$TMP/num/tokenizer.json"
err_case "tokenizer.json holding a number" 1 "expected a JSON object at the top, found a number" \
	"$DYN_BIN" tokenize "$TMP/num" --text x

finish
