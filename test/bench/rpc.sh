#!/bin/sh
# test/bench/rpc.sh - request plane against raw TCP, measured in one run by
# 'dyn rpc bench' (a forked server on 127.0.0.1; see dyn-rpc(1)).
# Target: at least 0.8x raw TCP for 1 KiB frames.  BENCH_SECONDS sets the
# length of each of the 12 measurements (default 1).
set -u
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
out=$("$DYN_BIN" rpc bench --duration "${BENCH_SECONDS:-1}")
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || exit "$rc"
# The first "1 KiB" row is the throughput table's.
echo "$out" | awk -F'|' '/^1 KiB/ && !done {
	split($2, a, " "); split($3, b, " "); done = 1;
	printf("1 KiB target >= 0.80x raw tcp: round trips %s, streamed frames %s\n", a[3], b[3]);
	printf("FIGURE rpc.round_trips_1KiB %s ops/s %s raw_tcp\n", num(a[1]), ratio(a[3]));
	printf("FIGURE rpc.streamed_frames_1KiB %s frames/s %s raw_tcp\n", num(b[1]), ratio(b[3]));
}
# "12.3k" -> 12300, "1.20M" -> 1200000; "0.93x" -> 0.93
function num(s) { if (s ~ /M$/) return (s + 0) * 1e6; if (s ~ /k$/) return (s + 0) * 1e3; return s + 0 }
function ratio(s) { sub(/x$/, "", s); return (s ~ /^[0-9.]+$/) ? s : "-" }'
