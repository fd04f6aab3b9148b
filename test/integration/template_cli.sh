#!/bin/sh
# template_cli.sh - "dyn template" as an operator uses it: the prompt is
# printed byte for byte (no newline added), special tokens come from the
# model's tokenizer_config.json, options and DYN_* variables work, batch
# mode answers every line, and failures have the documented exit statuses
# (1 for a template or input that cannot be rendered, 2 for usage errors).
# The expected prompts were worked out by hand from the templates (the
# byte-level comparison with jinja2 is template_conformance.py).
set -u
. "$(dirname "$0")/lib.sh"

MODELS=$TOP/../shared/models
same() { cmp -s "$1" "$2"; }

printf '%s' '[{"role": "user", "content": "hi"}]' >"$TMP/hi.json"

# Qwen3 (its real template): thinking off adds an empty think block
if [ -d "$MODELS/qwen3-0.6b-shape" ]; then
	"$DYN_BIN" template "$MODELS/qwen3-0.6b-shape" --messages "$TMP/hi.json" \
		--kwargs '{"enable_thinking": false}' >"$TMP/out"; rc=$?
	printf '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' >"$TMP/want"
	check "qwen3 prompt, byte for byte, no newline added" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
	"$DYN_BIN" template "$MODELS/qwen3-0.6b-shape" --messages - --no-generation-prompt \
		<"$TMP/hi.json" >"$TMP/out"; rc=$?
	printf '<|im_start|>user\nhi<|im_end|>\n' >"$TMP/want"
	check "--no-generation-prompt, messages from stdin" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
	printf '%s' '[{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "It is "}]' >"$TMP/prefill.json"
	"$DYN_BIN" template "$MODELS/qwen3-0.6b-shape" --messages "$TMP/prefill.json" \
		--continue-final-message >"$TMP/out"; rc=$?
	printf '<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nIt is ' >"$TMP/want"
	check "--continue-final-message ends right after the prefill (its space kept)" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
else
	skip "qwen3" "$MODELS/qwen3-0.6b-shape missing"
fi

# TinyLlama: eos_token comes from tokenizer_config.json
if [ -d "$MODELS/tinyllama-1.1b-shape" ]; then
	printf '%s' '[{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}]' >"$TMP/sys.json"
	"$DYN_BIN" template "$MODELS/tinyllama-1.1b-shape" --messages "$TMP/sys.json" >"$TMP/out"; rc=$?
	printf '<|system|>\nBe nice.</s>\n<|user|>\nhi</s>\n<|assistant|>\n' >"$TMP/want"
	check "special tokens from tokenizer_config.json" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
else
	skip "tinyllama" "$MODELS/tinyllama-1.1b-shape missing"
fi

# A bare template: tools, documents, kwargs and the fixed clock
cat >"$TMP/t.jinja" <<'EOF'
{{- tools|length }}|{{ tools[0].function.name }}|{{ documents is none }}|{{ messages|length }}|
{{- strftime_now('%d %b %Y') }}|{{ who }}|{{ add_generation_prompt }}
EOF
printf '%s' '[{"type": "function", "function": {"name": "f"}}]' >"$TMP/tools.json"
DYN_TEMPLATE_NOW=2025-03-14 "$DYN_BIN" template --template "$TMP/t.jinja" --messages "$TMP/hi.json" \
	--tools "$TMP/tools.json" --kwargs '{"who": "me"}' >"$TMP/out"; rc=$?
printf '1|f|True|1|14 Mar 2025|me|True' >"$TMP/want"
check "bare template: tools, kwargs, DYN_TEMPLATE_NOW" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'
"$DYN_BIN" template --template "$TMP/t.jinja" --messages "$TMP/hi.json" --tools "$TMP/tools.json" \
	--template-now 2024-02-29T10:00 --kwargs '{"who": 1.0}' --no-generation-prompt >"$TMP/out"; rc=$?
printf '1|f|True|1|29 Feb 2024|1.0|False' >"$TMP/want"
check "--template-now, a float kwarg stays a float" '[ $rc -eq 0 ] && same "$TMP/out" "$TMP/want"'

# Batch: one result line per request, errors included; same bytes as one-shot
printf '%s\n' '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"function": {"name": "g"}}], "chat_template_kwargs": {"who": "b"}}' \
	'{"messages": [], "chat_template_kwargs": {"who": "c"}}' \
	'' \
	'not json' >"$TMP/batch.jsonl"
DYN_TEMPLATE_NOW=2025-03-14 "$DYN_BIN" template --template "$TMP/t.jinja" --batch "$TMP/batch.jsonl" >"$TMP/out"; rc=$?
check "batch answers every non-empty line" '[ $rc -eq 0 ] && [ "$(wc -l <"$TMP/out")" -eq 3 ]'
check "batch results" '"$PYTHON" -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert r[0] == {\"ok\": True, \"prompt\": \"1|g|True|1|14 Mar 2025|b|True\"}, r[0]
assert not r[1][\"ok\"] and \"line 1\" in r[1][\"error\"], r[1]
assert not r[2][\"ok\"] and \"JSON\" in r[2][\"error\"], r[2]
" "$TMP/out"'

# Failures
printf '%s' '{% if messages|length < 2 %}{{ raise_exception("need two messages") }}{% endif %}' >"$TMP/raise.jinja"
err=$("$DYN_BIN" template --template "$TMP/raise.jinja" --messages "$TMP/hi.json" 2>&1 >"$TMP/out"); rc=$?
check "raise_exception: exit 1, the message, no output" \
	'[ $rc -eq 1 ] && contains "$err" "need two messages" && contains "$err" "line 1" && [ ! -s "$TMP/out" ]'
printf '%s' '{% for %}' >"$TMP/syntax.jinja"
err=$("$DYN_BIN" template --template "$TMP/syntax.jinja" --messages "$TMP/hi.json" 2>&1); rc=$?
check "syntax error: exit 1 naming the file" '[ $rc -eq 1 ] && contains "$err" "syntax.jinja: line 1"'
printf '%s' '{"role": ' >"$TMP/bad.json"
err=$("$DYN_BIN" template --template "$TMP/t.jinja" --messages "$TMP/bad.json" 2>&1); rc=$?
check "invalid messages JSON: exit 1" '[ $rc -eq 1 ] && contains "$err" "messages"'
err=$("$DYN_BIN" template "$TMP/no-such-model" --messages "$TMP/hi.json" 2>&1); rc=$?
check "model dir without templates: exit 1" '[ $rc -eq 1 ]'
"$DYN_BIN" template --template "$TMP/t.jinja" >/dev/null 2>&1; rc=$?
check "no --messages: exit 2" '[ $rc -eq 2 ]'
"$DYN_BIN" template --messages "$TMP/hi.json" >/dev/null 2>&1; rc=$?
check "neither MODEL_DIR nor --template: exit 2" '[ $rc -eq 2 ]'
err=$(DYN_TEMPLATE_NOW=someday "$DYN_BIN" template --template "$TMP/t.jinja" --messages "$TMP/hi.json" 2>&1); rc=$?
check "bad DYN_TEMPLATE_NOW: exit 2" '[ $rc -eq 2 ] && contains "$err" "someday"'
printf '%s' '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}' >"$TMP/loop.jinja"
err=$("$DYN_BIN" template --template "$TMP/loop.jinja" --messages "$TMP/hi.json" --max-steps 100000 2>&1); rc=$?
check "runaway loop stops at --max-steps" '[ $rc -eq 1 ] && contains "$err" "step budget"'
err=$("$DYN_BIN" template --template "$TMP/loop.jinja" --messages "$TMP/hi.json" --max-steps 1000000000000 --max-time 200 2>&1); rc=$?
check "runaway loop stops at --max-time" '[ $rc -eq 1 ] && contains "$err" "took too long" && contains "$err" "200 ms"'
# work on long strings costs steps in proportion: scanning 60 MB in a loop
# stops after a few rounds on the default budget, not after hours
printf '%s' '{% set big = "a" * 60000000 %}{% for i in range(100000) %}{% if big.count("b") %}x{% endif %}{% endfor %}' >"$TMP/scan.jinja"
err=$("$DYN_BIN" template --template "$TMP/scan.jinja" --messages "$TMP/hi.json" 2>&1); rc=$?
check "scanning a long string in a loop stops on the budget" \
	'[ $rc -eq 1 ] && { contains "$err" "step budget" || contains "$err" "took too long"; }'

finish
