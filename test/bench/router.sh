#!/bin/sh
# router.sh - the KV router's prefix index ('make bench'): 1,000 workers,
# 1M indexed (block, worker) pairs, find_matches latency p50/p99 for
# requests of 64-256 blocks, events applied per second (index alone, and
# through the wire: JSON and binary), against a naive baseline of per-worker
# hash sets measured in the same run, and ops/s of a trace replay counted
# as Dynamo's indexer benchmark counts them (router_bench.c): 1,000 LRU
# workers at 1M pairs, and Dynamo's default shape (256 workers that never
# evict).  Single thread.
set -u
BUILD=${BUILD:-build/rel}
if [ ! -x "$BUILD/bench/router_bench" ]; then
	echo "router: $BUILD/bench/router_bench is not built (run 'make bench')"
	exit 1
fi
# The replay phase counts ops as Dynamo's mooncake_bench does, on the
# Mooncake trace when the shared checkout has it (a synthetic trace of the
# same shape otherwise).
TRACE=../shared/traces/mooncake_synthetic_trace.jsonl
[ -r "$TRACE" ] || TRACE=
exec "$BUILD/bench/router_bench" 1000 1000000 20000 $TRACE
