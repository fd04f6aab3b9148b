#!/bin/sh
# gpu.sh - the CUDA backend's decode and prefill throughput against the
# GPU's bandwidth and BF16 peak measured in the same run (gpu_bench.c);
# one SKIP line where no GPU is usable.
set -u
BUILD=${BUILD:-build/rel}
M=../shared/models
exec "$BUILD/bench/gpu_bench" $M/qwen3-0.6b-shape $M/llama-3.2-1b-shape $M/llama-3.1-8b-shape
