#!/bin/sh
# routing.sh - KV-aware routing quality ('make bench'): the Mooncake
# synthetic trace replayed through dyn frontend in front of 8 mock
# workers with --router-mode kv, round-robin and random; hit rate against
# the offline best, TTFT against round-robin.  Scale and load are set by
# the environment (LENGTH_SCALE, SPEEDUP, REQUESTS, WORKERS, MODES); see
# routing.py.
exec python3 "$(dirname "$0")/routing.py"
