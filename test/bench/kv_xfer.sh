#!/bin/sh
# kv_xfer.sh - the KV data plane's throughput on loopback ('make bench'):
# lender -> borrower fetches of 1, 10, 100 and 1000 blocks of 64 KiB, as
# GB/s and as a ratio to a plain TCP socket pair moving the same bytes in
# the same messages, measured in the same run (kv_xfer_bench.c); over ucx
# too where UCX loads, then compared with ucx_perftest's ucp_get on this
# host (Debian ucx-utils), when it is installed: of one block (64 KiB,
# cache-resident) and of one 1000-block fetch's bytes (64000 KiB, bound by
# memory bandwidth like the fetch).  Both get from memory UCX allocated
# (shared memory the client maps and copies from), as a prefill worker
# lending over UCX keeps its pool (dyn-kv-transfer(7)).
set -u
BUILD=${BUILD:-build/rel}
BIN="$BUILD/bench/kv_xfer_bench"
if [ ! -x "$BIN" ]; then
	echo "kv_xfer: $BIN is not built (run 'make bench')"
	exit 1
fi
BLOCK=65536
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$BIN" $BLOCK 256 | tee "$out" || exit 1

# perftest SIZE ITERS: ucx_perftest's ucp_get GB/s between a server and
# a client on this host (empty when UCX cannot run here).
perftest() {
	port=$((20000 + ($$ + $1 / 4096) % 20000))
	timeout 60 ucx_perftest -t ucp_get -s $1 -n $2 -p $port >/dev/null 2>&1 &
	server=$!
	sleep 1
	timeout 60 ucx_perftest 127.0.0.1 -t ucp_get -s $1 -n $2 -p $port 2>/dev/null |
		awk '$1 == "Final:" { printf("%.3f", $6 / 1000) }'
	kill $server 2>/dev/null
	wait $server 2>/dev/null
}

if ! command -v ucx_perftest >/dev/null 2>&1; then
	echo "ucx_perftest: not installed (Debian ucx-utils): no UCX baseline"
	exit 0
fi
ucx=$(awk '$1 == "FIGURE" && $2 == "kv_xfer_ucx_1000x64KiB" { print $3 }' "$out")
perf=$(perftest $BLOCK 20000)
if [ -z "$perf" ]; then
	echo "ucx_perftest: no result (UCX could not run here)"
	exit 0
fi
perf_big=$(perftest $((BLOCK * 1000)) 20)
echo "ucx_perftest ucp_get, $((BLOCK / 1024)) KiB messages: $perf GB/s"
echo "FIGURE ucx_perftest_get_64KiB $perf GB/s - -"
if [ -n "$perf_big" ]; then
	echo "ucx_perftest ucp_get, $((BLOCK * 1000 / 1024)) KiB messages: $perf_big GB/s"
	echo "FIGURE ucx_perftest_get_$((BLOCK * 1000 / 1024))KiB $perf_big GB/s - -"
fi
if [ -n "$ucx" ]; then
	ratio=$(awk -v a="$ucx" -v b="$perf" 'BEGIN { printf("%.3f", b > 0 ? a / b : 0) }')
	echo "dyn over ucx, 1000 blocks per fetch: $ucx GB/s = $ratio x ucx_perftest (64 KiB)"
	echo "FIGURE kv_xfer_ucx_vs_perftest_1000x64KiB $ucx GB/s $ratio ucx_perftest_get_64KiB"
	if [ -n "$perf_big" ]; then
		ratio=$(awk -v a="$ucx" -v b="$perf_big" 'BEGIN { printf("%.3f", b > 0 ? a / b : 0) }')
		echo "dyn over ucx, 1000 blocks per fetch: $ucx GB/s = $ratio x ucx_perftest ($((BLOCK * 1000 / 1024)) KiB)"
		echo "FIGURE kv_xfer_ucx_vs_perftest_big_1000x64KiB $ucx GB/s $ratio ucx_perftest_get_$((BLOCK * 1000 / 1024))KiB"
	fi
fi
