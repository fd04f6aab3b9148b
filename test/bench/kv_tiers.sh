#!/bin/sh
# kv_tiers.sh - the KV cache tiers ('make bench'): offload and onboard
# bandwidth of G2, G3 and G4 against memcpy and plain file writes and
# reads of the same bytes (kv_tiers_bw.c), then TTFT of a multi-turn chat
# workload whose prefixes come back after leaving the KV pool, tiers off
# against G2, G2+G3 and G2+G3+G4, one worker and two (kv_tiers.py).
set -u
BUILD=${BUILD:-build/rel}
BIN="$BUILD/bench/kv_tiers_bw"
if [ ! -x "$BIN" ]; then
	echo "kv_tiers: $BIN is not built (run 'make bench')"
	exit 1
fi
"$BIN" || exit 1
exec python3 "$(dirname "$0")/kv_tiers.py"
