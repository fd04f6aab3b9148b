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

"$DYN_BIN" run >/dev/null 2>&1; rc=$?
check "no MODEL: exit 2" '[ $rc -eq 2 ]'
err=$("$DYN_BIN" run "$M" --temperature hot --prompt x 2>&1); rc=$?
check "bad --temperature: exit 2 naming it" '[ $rc -eq 2 ] && contains "$err" "--temperature"'
err=$("$DYN_BIN" run "$TMP/nonexistent" --prompt x 2>&1); rc=$?
check "missing model: exit 1 with a message" '[ $rc -eq 1 ] && [ -n "$err" ]'
finish
