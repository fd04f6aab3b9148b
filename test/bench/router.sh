#!/bin/sh
# router.sh - the KV router's prefix index ('make bench'): 1,000 workers,
# 1M indexed (block, worker) pairs, find_matches latency p50/p99 for
# requests of 64-256 blocks, events applied per second (index alone, and
# through the JSON wire format), against a naive baseline of per-worker
# hash sets measured in the same run (router_bench.c).  Single thread.
set -u
BUILD=${BUILD:-build/rel}
if [ ! -x "$BUILD/bench/router_bench" ]; then
	echo "router: $BUILD/bench/router_bench is not built (run 'make bench')"
	exit 1
fi
exec "$BUILD/bench/router_bench" 1000 1000000 20000
