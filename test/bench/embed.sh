#!/bin/sh
# test/bench/embed.sh - all-MiniLM-L6-v2 embeddings/s at batch 1 and 32:
# dyn run --embed against sentence-transformers (torch, CPU) in the same
# run (embed_bench.py).
set -u
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
	if [ -x build/venv/bin/python ]; then PYTHON=build/venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" test/bench/embed_bench.py "$@"
