#!/bin/sh
# test/bench/grammar.sh - structured output cost: dyn's grammar engine
# (core/grammar) against xgrammar on the same schemas, texts and
# vocabularies (Qwen3, Llama 3): compile time and the allowed-token mask
# per token, cold (the mask cache filling) and warm.  The work is in
# grammar_bench.py (xgrammar side, table) and grammar_bench.c (dyn side).
set -u
BUILD=${BUILD:-build/rel}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
	if [ -x build/venv/bin/python ]; then PYTHON=build/venv/bin/python; else PYTHON=python3; fi
fi
if [ ! -x "$BUILD/bench/grammar_bench" ]; then
	echo "grammar: $BUILD/bench/grammar_bench is not built (run 'make bench')"
	exit 1
fi
exec "$PYTHON" test/bench/grammar_bench.py --bench "$BUILD/bench/grammar_bench" "$@"
