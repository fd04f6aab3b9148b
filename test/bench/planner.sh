#!/bin/sh
# planner.sh - the live planner against static deployments of its average
# and its peak size on a daily-like trace compressed to a few minutes,
# mock workers ('make bench', BENCH=planner): SLA attainment and
# worker-seconds, and dyn planner --simulate's prediction against the
# real run.  Scale by the environment (DURATION, SPEEDUP, PEAK ...); see
# planner.py.
exec python3 "$(dirname "$0")/planner.py"
