#!/bin/sh
# disagg.sh - disaggregated against aggregated serving ('make bench'): one
# workload mixing long prompts and long outputs, at the same request rate,
# through dyn frontend in front of prefill + decode pools and in front of
# as many aggregated workers; TTFT, ITL and throughput of each layout and
# their ratios.  Mock workers (2P+2D vs 4 agg), then the builtin engine on
# dummy weights (1P+1D vs 2 agg).  Scale and load are set by the
# environment (REQUESTS, RATE, SPEEDUP, BUILTIN=0 ...); see disagg.py.
exec python3 "$(dirname "$0")/disagg.py"
