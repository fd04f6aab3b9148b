#!/bin/sh
# engine.sh - CPU engine throughput ('make bench'): prefill tokens/s of a
# 512-token prompt and decode tokens/s (128 tokens, batch 1 and 8) on dummy
# F32 weights of real model shapes, with 1 and 2 threads, each against the
# memory-bandwidth limit measured in the same run (ratio = achieved / limit;
# decode at batch 1 cannot beat 1.0).
#
# llama.cpp baseline: not measured yet (it needs llama.cpp built from the
# llama-cpp-python sdist and GGUF files written with the gguf package).
set -u
BUILD=${BUILD:-build/rel}
MODELS=${MODELS:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/models}
status=0
for shape in smollm2-135m-shape qwen3-0.6b-shape; do
	"$BUILD/bench/engine_bench" "$MODELS/$shape" 1 2 || status=1
done
exit $status
