#!/bin/sh
# test/bench/grammar_decode.sh - decode tokens/s with and without a JSON
# schema on the same model, through the frontend and a builtin worker
# (see grammar_decode.py; REQUESTS, WARMUP, WINDOW, MAX_TOKENS tune it).
set -u
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
	if [ -x build/venv/bin/python ]; then PYTHON=build/venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" test/bench/grammar_decode.py "$@"
