#!/bin/sh
# test/bench/tok.sh - tokenizer benchmark: dyn's encoder and decoder
# against Hugging Face tokenizers (Rust, single-threaded) on the same
# documents and vocabularies, plus tokenizer.json load times.  The work is
# in tok_bench.py (HF side, table) and tok_bench.c (dyn side).
set -u
BUILD=${BUILD:-build/rel}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
	if [ -x build/venv/bin/python ]; then PYTHON=build/venv/bin/python; else PYTHON=python3; fi
fi
if [ ! -x "$BUILD/bench/tok_bench" ]; then
	echo "tok: $BUILD/bench/tok_bench is not built (run 'make bench')"
	exit 1
fi
exec "$PYTHON" test/bench/tok_bench.py --bench "$BUILD/bench/tok_bench" "$@"
