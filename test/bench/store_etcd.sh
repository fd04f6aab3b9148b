#!/bin/sh
# store_etcd.sh - the etcd store backend ('make bench'): put and get per
# second through dyn's backend against a plain libcurl loop over the same
# gateway, and watch delivery latency (store_etcd_bench.c), on a private
# single-member etcd started here on a free loopback port and killed after.
set -u
BUILD=${BUILD:-build/rel}
if [ ! -x "$BUILD/bench/store_etcd_bench" ]; then
	echo "store_etcd: $BUILD/bench/store_etcd_bench is not built (run 'make bench')"
	exit 1
fi
if ! command -v etcd >/dev/null; then
	echo "store_etcd: no etcd binary (apt-get install etcd-server): skipped"
	exit 0
fi
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(port)
pport=$(port)
etcd --data-dir "$dir/data" --listen-client-urls "http://127.0.0.1:$cport" \
	--advertise-client-urls "http://127.0.0.1:$cport" \
	--listen-peer-urls "http://127.0.0.1:$pport" \
	--initial-advertise-peer-urls "http://127.0.0.1:$pport" \
	--initial-cluster "default=http://127.0.0.1:$pport" >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill -9 $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
i=0
until curl -sf -X POST -d '{}' "http://127.0.0.1:$cport/v3/maintenance/status" >/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "store_etcd: etcd did not start: $(tail -5 "$dir/etcd.log")"
		exit 1
	fi
	sleep 0.1
done
timeout 120 "$BUILD/bench/store_etcd_bench" "127.0.0.1:$cport" 2000 || exit 1
timeout 600 python3 "$(dirname "$0")/store_register.py" "etcd://127.0.0.1:$cport"
