#!/bin/sh
# device_check.sh - every GPU check and the GPU benchmark in one go, for a
# lent GPU machine (the device tool: one call, under 9 minutes); results
# under $OUT (default ./gpu-out): version.txt, tests.txt, bench.txt,
# summary.txt.
#
# Prepared on the build machine (the GPU machine may lack the build
# dependencies, and ../shared does not travel):
#   make -j2 && make build/rel/bench/gpu_bench
#   mkdir -p gpu_models && echo /gpu_models/ >> .git/info/exclude
#   cp -r ../shared/models/{stories260K,qwen3-0.6b-shape,llama-3.2-1b-shape,llama-3.1-8b-shape} gpu_models/
#   run: sh test/gpu/device_check.sh
#        carry: dyn, build/rel/bench/gpu_bench, build/rel/test/test_cuda, gpu_models
#   (about 56 MB with the tracked tree, under the 64 MiB limit; `strip` the
#   three binaries for room)
# Without a carried ./dyn it builds with make (nvcc and the Debian build
# dependencies must be there).
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec 3>&1 >"$OUT/log.txt" 2>&1
set -x
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
if [ ! -x dyn ] || [ ! -x build/rel/bench/gpu_bench ]; then
	make -j16 && make -j16 build/rel/bench/gpu_bench || { echo "build failed" >"$OUT/summary.txt"; exit 1; }
fi
# the tests and the bench find the models in ../shared/models
if [ ! -d ../shared/models ] && [ -d gpu_models ]; then
	mkdir -p ../shared && ln -s "$PWD/gpu_models" ../shared/models
fi
./dyn version >"$OUT/version.txt" 2>&1
# the Python tests need only the standard library (gpu_logits uses torch
# when it is there, else F32 dummy weights)
PY=$(command -v python3)
: >"$OUT/tests.txt"
TESTS="test/integration/gpu_logits.py test/integration/gpu_serve.py test/integration/gpu_disagg.py"
# these two build fake drivers with cc
command -v cc >/dev/null && TESTS="$TESTS test/integration/cuda_runtime.py test/integration/cuda_fake.py"
for t in $TESTS; do
	echo "--- $t" >>"$OUT/tests.txt"
	DYN_BIN=$PWD/dyn timeout 200 "$PY" "$t" >>"$OUT/tests.txt" 2>&1
	echo "--- $t: exit $?" >>"$OUT/tests.txt"
done
echo "--- test_cuda" >>"$OUT/tests.txt"
[ -x build/rel/test/test_cuda ] && timeout 60 build/rel/test/test_cuda >>"$OUT/tests.txt" 2>&1
BUILD=build/rel timeout 240 sh test/bench/gpu.sh >"$OUT/bench.txt" 2>&1
echo "gpu_bench: exit $?" >>"$OUT/bench.txt"
{
	grep '^CUDA backend' "$OUT/version.txt"
	echo "tests: $(grep -c '^PASS' "$OUT/tests.txt") passed, $(grep -c '^FAIL' "$OUT/tests.txt") failed, $(grep -c '^SKIP' "$OUT/tests.txt") skipped"
	grep '^FAIL' "$OUT/tests.txt"
	grep -v '^--- ' "$OUT/bench.txt"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt" >&3
