#!/bin/sh
# test/bench/frontend.sh - frontend overhead.  Echo workers (delay 0) stream
# the prompt's tokens back; the same load runs against the frontend over
# HTTP (tokenize, route, detokenize, SSE) and against the worker directly
# over the request plane, at concurrency 1, 64 and 512.  Reports requests/s,
# streamed tokens/s, latency p50/p99 and what the frontend adds, and the
# frontend's CPU time per streamed token.  BENCH_SECONDS per point (default 3).
set -u
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
BUILD=${BUILD:-build/rel}
LOAD=$BUILD/bench/frontend_load
SECS=${BENCH_SECONDS:-3}
MODEL=$(cd "$(dirname "$0")/../.." && pwd)/../shared/models/stories260K
[ -x "$LOAD" ] || { echo "frontend bench: $LOAD not built"; exit 1; }
[ -d "$MODEL" ] || { echo "frontend bench: $MODEL missing; skipped"; exit 0; }
tmp=$(mktemp -d); export DYN_STORE="file://$tmp/store" DYN_LOG=warn
trap 'kill $wpid $fpid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
DYN_TOKEN_ECHO_DELAY_MS=0 "$DYN_BIN" serve --model "$MODEL" --engine echo >"$tmp/w" & wpid=$!
"$DYN_BIN" frontend --http-port 0 --http-host 127.0.0.1 >"$tmp/f" & fpid=$!
for i in $(seq 100); do
	port=$(sed -n 's/.*127.0.0.1:\([0-9]*\) .*/\1/p' "$tmp/f")
	addr=$(sed -n "s/.*\/generate \([0-9.:]*\).*/\1/p" "$tmp/w")
	[ -n "$port" ] && [ -n "$addr" ] && curl -sf "http://127.0.0.1:$port/v1/models" |
		grep -q stories260K && break
	sleep 0.1
done
PROMPT="Once upon a time there was a little girl named Lily. She liked to play outside in the sun with her dog."
IDS=$("$DYN_BIN" tokenize "$MODEL" --text "$PROMPT" | tr ' ' ',')
ntok=$(echo "$IDS" | tr ',' '\n' | grep -c .)
echo "frontend bench: prompt of $ntok tokens echoed back; ${SECS}s per point; 2-core machine shares client, frontend, worker"
printf '%-5s | %-27s | %-27s | %s\n' "" "frontend (HTTP + SSE)" "worker direct (request plane)" "frontend adds"
printf '%-5s | %8s %9s %8s | %8s %9s %8s | %8s %8s %s\n' conc "req/s" "tok/s" "p50 ms" "req/s" "tok/s" "p50 ms" "p50 ms" "p99 ms" "fe CPU us/tok"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for c in 1 64 512; do
	c0=$(cpu $fpid)
	h=$("$LOAD" http "$port" stories260K "$PROMPT" "$c" "$SECS") || exit 1
	c1=$(cpu $fpid)
	r=$("$LOAD" rpc "$addr" dyn/backend/generate "$IDS" "$c" "$SECS") || exit 1
	echo "$h $r $c0 $c1" | awk -v c="$c" -v hz="$(getconf CLK_TCK)" -v secs="$SECS" '{
		cpu_us = ($10 - $9) / hz * 1e6; toks = $2 * secs;
		printf("%-5s | %8.0f %9.0f %8.2f | %8.0f %9.0f %8.2f | %8.2f %8.2f %8.1f\n",
		       c, $1, $2, $3, $5, $6, $7, $3 - $7, $4 - $8, toks > 0 ? cpu_us / toks : 0)
		# Headline figures, as ratios to the worker called directly.
		printf("FIGURE frontend.requests_per_s_c%s %.0f req/s %s worker_direct\n",
		       c, $1, $5 > 0 ? sprintf("%.3f", $1 / $5) : "-") >"/dev/stderr"
		printf("FIGURE frontend.tokens_per_s_c%s %.0f tok/s %s worker_direct\n",
		       c, $2, $6 > 0 ? sprintf("%.3f", $2 / $6) : "-") >"/dev/stderr"
		printf("FIGURE frontend.added_latency_p50_c%s %.2f ms - -\n", c, $3 - $7) >"/dev/stderr"
		printf("FIGURE frontend.cpu_per_token_c%s %.2f us - -\n", c,
		       toks > 0 ? cpu_us / toks : 0) >"/dev/stderr" }'
done
