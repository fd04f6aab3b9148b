#!/bin/sh
# kv_tiers.sh - TTFT of a multi-turn workload whose prefixes come back after
# leaving the KV pool, with KV cache tiers (G2 + G3) against without, in
# the same run; see kv_tiers.py.
exec python3 "$(dirname "$0")/kv_tiers.py"
