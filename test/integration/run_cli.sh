#!/bin/sh
# run_cli.sh - "dyn run" as a script uses it: stories260K greedy decoding
# from BOS reproduces the published reference text byte for byte; piped
# stdin answers once; seeded sampling is reproducible; usage errors.
set -u
. "$(dirname "$0")/lib.sh"

M=$TOP/../shared/models/stories260K
REF=$M/expected_greedy_from_bos.txt
[ -f "$REF" ] || { skip "stories260K" "$M not found"; finish; }

# The reference holds the 200 tokens greedy decoding produces after BOS
# (the empty prompt encodes to BOS alone); dyn run ends the answer with \n.
"$DYN_BIN" run "$M" --raw --prompt "" --temperature 0 --max-tokens 200 >"$TMP/out" 2>"$TMP/err"; rc=$?
printf '\n' | cat "$REF" - >"$TMP/want"
check "greedy from BOS matches the reference byte for byte" '[ $rc -eq 0 ] && cmp -s "$TMP/want" "$TMP/out"'

# Same through a tiny KV cache with chunked prefill of a long prompt.
head -c 300 "$REF" >"$TMP/prompt"
"$DYN_BIN" run "$M" --raw --temperature 0 --max-tokens 40 --prompt "$(cat "$TMP/prompt")" \
	>"$TMP/a" 2>/dev/null
"$DYN_BIN" run "$M" --raw --temperature 0 --max-tokens 40 --block-size 4 \
	--kv-cache-tokens 160 --max-num-batched-tokens 5 --threads 1 <"$TMP/prompt" >"$TMP/b" 2>/dev/null
check "piped stdin, small blocks and chunked prefill give the same answer" \
	'[ -s "$TMP/a" ] && cmp -s "$TMP/a" "$TMP/b"'

"$DYN_BIN" run "$M" --raw --prompt "Once" --temperature 1 --top-p 0.9 --seed 7 --max-tokens 30 >"$TMP/s1" 2>/dev/null
"$DYN_BIN" run "$M" --raw --prompt "Once" --temperature 1 --top-p 0.9 --seed 7 --max-tokens 30 >"$TMP/s2" 2>/dev/null
check "same seed, same answer" '[ -s "$TMP/s1" ] && cmp -s "$TMP/s1" "$TMP/s2"'

# The chat template path (stories260K carries a minimal template).
out=$("$DYN_BIN" run "$M" --prompt "Tom had a dog." --max-tokens 10 --temperature 0 --verbose 2>"$TMP/err"); rc=$?
err=$(cat "$TMP/err")
check "chat turn with --verbose reports speeds" '[ $rc -eq 0 ] && [ -n "$out" ] &&
	contains "$err" "tokens/s" && contains "$err" "loaded"'

# --logprobs N: one stderr line per token, the chosen token's logprob and
# N alternatives; under greedy the chosen token is the most likely one.
"$DYN_BIN" run "$M" --raw --prompt "Once" --temperature 0 --max-tokens 8 --logprobs 3 \
	>"$TMP/lp.out" 2>"$TMP/lp.err"; rc=$?
"$DYN_BIN" run "$M" --raw --prompt "Once" --temperature 0 --max-tokens 8 >"$TMP/nolp.out" 2>/dev/null
check "--logprobs leaves the answer unchanged" '[ $rc -eq 0 ] && cmp -s "$TMP/lp.out" "$TMP/nolp.out"'
lp_ok=$("$PYTHON" - "$TMP/lp.err" <<'PY'
import json, re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("logprob ")]
ok = len(lines) == 8
for l in lines:
    dec = json.JSONDecoder()
    rest = l[len("logprob "):]
    tok, i = dec.raw_decode(rest)
    lp, _, alts = rest[i:].partition("|")
    lp = float(lp)
    pairs, s = [], alts.strip()
    while s:
        t, j = dec.raw_decode(s)
        v, _, s = s[j:].strip().partition(" ")
        pairs.append((t, float(v)))
        s = s.strip()
    vals = [v for _, v in pairs]
    ok = ok and len(pairs) == 3 and lp <= 0 and pairs[0] == (tok, lp) and vals == sorted(vals, reverse=True)
print("ok" if ok else "bad")
PY
)
check "--logprobs 3: greedy token is the top alternative, 3 sorted alternatives per token" '[ "$lp_ok" = ok ]'
# Each token reads as the text it adds (" there", not "there", as the API
# shows it): the tokens joined are the answer, as OpenAI's logprobs are.
lp_text=$("$PYTHON" - "$TMP/lp.err" "$TMP/lp.out" <<'PY'
import json, sys
got = [json.JSONDecoder().raw_decode(l[len("logprob "):])[0]
       for l in open(sys.argv[1]) if l.startswith("logprob ")]
answer = open(sys.argv[2]).read().rstrip("\n")
print("ok" if "".join(got) == answer and any(t.startswith(" ") for t in got)
      else "bad: %r vs %r" % ("".join(got), answer))
PY
)
check "--logprobs: the tokens joined are the answer (each reads as the text it adds)" \
	'[ "$lp_text" = ok ] || { echo "$lp_text" >&2; false; }'

# Peak memory while answering: weights + KV pool + under 100 MB.  A wider,
# deeper stories260K with random weights (F32, ~460 MB) and a 4096-token
# KV pool (f16); the peak is the child's maximum RSS (getrusage).
peak=$("$PYTHON" - "$M" "$DYN_BIN" "$TMP/wide" <<'PY'
import json, os, re, resource, shutil, subprocess, sys
src, dyn, d = sys.argv[1:4]
os.makedirs(d, exist_ok=True)
for f in os.listdir(src):
    if f != "model.safetensors":
        shutil.copy(os.path.join(src, f), d)
cfg = json.load(open(os.path.join(src, "config.json")))
cfg.update(hidden_size=768, intermediate_size=3072, num_hidden_layers=16,
           num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=4096)
cfg.pop("head_dim", None)
json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
p = subprocess.run([dyn, "run", d, "--raw", "--load-format", "dummy", "--kv-cache-tokens", "4096",
                    "--prompt", "Once upon a time " * 40, "--max-tokens", "16", "--verbose"],
                   capture_output=True, text=True)
m = re.search(r"([0-9.]+) M parameters", p.stderr)
weights = float(m.group(1)) * 1e6 * 4 if m else 0
kv = 16 * 2 * 768 * 2 * 4096  # f16 K/V (the default --kv-cache-dtype)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print("%d %.0f %.0f %.0f" % (p.returncode, peak / 1e6, weights / 1e6, kv / 1e6))
PY
)
read -r p_rc p_peak p_w p_kv <<EOF
$peak
EOF
check "peak RSS answering = weights + KV pool + under 100 MB ($p_peak MB = $p_w + $p_kv + ...)" \
	'[ "$p_rc" = 0 ] && [ "${p_w:-0}" -gt 400 ] && [ "$p_peak" -lt $(( p_w + p_kv + 100 )) ]'

# --http on an IPv6 address: the printed URL has it in brackets (as URLs
# need) and the printed curl line works as printed; a frontend listening on
# the IPv6 wildcard prints a loopback URL that answers.
if grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
	spawn "$DYN_BIN" run "$M" --http --http-port 0 --http-host ::1 >"$TMP/v6.out" 2>"$TMP/v6.err"
	wait_for 30 grep -q '^try: curl ' "$TMP/v6.out"
	v6=$(cat "$TMP/v6.out")
	try=$(sed -n 's/^try: //p' "$TMP/v6.out")
	out=$(sh -c "$try -sS -f --max-time 30" 2>&1); rc=$?
	check "run --http --http-host ::1: bracketed URL, the curl line works" \
		'contains "$v6" "listening on http://[::1]:" && contains "$try" "curl http://[::1]:" &&
		[ $rc -eq 0 ] && contains "$out" "\"choices\""'
	kill "$LAST_PID" 2>/dev/null
	spawn "$DYN_BIN" frontend --http-port 0 --http-host :: --store "file://$TMP/store6" \
		>"$TMP/fe6.out" 2>"$TMP/fe6.err"
	wait_for 20 grep -q '^frontend listening on ' "$TMP/fe6.out"
	url=$(sed -n 's|^frontend listening on \(http://[^ ]*\) .*|\1|p' "$TMP/fe6.out")
	out=$(curl -sS -f --max-time 10 "$url/v1/models" 2>&1); rc=$?
	check "frontend --http-host :: prints a loopback URL (no bare ::) that answers" \
		'! contains "$url" "::" && [ $rc -eq 0 ] && contains "$out" "\"list\""'
	port6=${url##*:}
	out=$(curl -sS -f --max-time 10 "http://[::1]:$port6/v1/models" 2>&1); rc=$?
	check "frontend --http-host :: answers on IPv6 as well (dual stack)" \
		'[ $rc -eq 0 ] && contains "$out" "\"list\""'
	kill "$LAST_PID" 2>/dev/null
else
	skip "run --http on ::1" "no IPv6 loopback on this machine"
fi

"$DYN_BIN" run >/dev/null 2>&1; rc=$?
check "no MODEL: exit 2" '[ $rc -eq 2 ]'
err=$("$DYN_BIN" run "$M" --temperature hot --prompt x 2>&1); rc=$?
check "bad --temperature: exit 2 naming it" '[ $rc -eq 2 ] && contains "$err" "--temperature"'
err=$("$DYN_BIN" run "$TMP/nonexistent" --prompt x 2>&1); rc=$?
check "missing model: exit 1 with a message" '[ $rc -eq 1 ] && [ -n "$err" ]'
finish
