#!/bin/sh
# rpc_discovery.sh - request plane + discovery across real processes on
# 127.0.0.1, for both embedded store backends (file:// and sqlite://):
#
#   stream_10000   'dyn rpc call' finds a 'dyn rpc serve' through the store and
#                  gets 10,000 DATA frames, none lost or reordered
#   stale_record_skipped  an unreachable instance whose record has not
#                  expired yet is skipped for a live one
#   bad_address_*  records with an unusable address ("nocolon", port 99999)
#                  are left out of 'dyn rpc ls' (with a warning) and never called
#   cancel_timeout a client that gives up (--timeout) cancels the stream: the
#                  server logs that it stopped early
#   cancel_sigint  the same for a client killed with SIGINT
#   graceful_term  SIGTERM deregisters at once (long before the lease TTL)
#   crash_ttl      after SIGKILL the record vanishes within TTL + 1 s
#
# Prints PASS:/FAIL: lines; every wait is bounded; all processes are killed
# on exit.
set -u
. "$(dirname "$0")/lib.sh"
TTL_MS=2000
tmp=$TMP

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_ms SECONDS COMMAND...: poll every 50 ms; 0 once COMMAND succeeds
# (finer than lib.sh's wait_for, for the timing checks).
wait_ms() {
	limit=$(( $(now_ms) + $1 * 1000 )); shift
	while [ "$(now_ms)" -lt "$limit" ]; do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# serve NAME COMPONENT TTL_MS: start a server in the background; sets $spid.
serve() {
	local try
	for try in 1 2; do
		spawn env DYN_LOG=rpc=debug,info "$DYN_BIN" rpc serve --namespace itest \
			--component "$2" --host 127.0.0.1 --port 0 --store "$store" \
			--lease-ttl "$3" --grace-period 5 >"$tmp/$1.log" 2>&1
		spid=$LAST_PID
		wait_ms 10 grep -q '^listening on ' "$tmp/$1.log" && return 0
		# a loaded machine can stall a server past its short lease
		# before it registers (it exits: "lease ... not found"): once more
		[ "$try" = 1 ] && grep -q 'lease [0-9a-f]* not found' "$tmp/$1.log" && continue
		echo "server $1 did not start:" >&2
		cat "$tmp/$1.log" >&2
		return 1
	done
}

instance_of() { sed -n 's/^listening on .* instance \([0-9a-f]*\) .*/\1/p' "$tmp/$1.log"; }
listed() { "$DYN_BIN" rpc ls "$1" --store "$store" 2>>"$tmp/ls.err" | grep -q "$2"; }
not_listed() { ! listed "$@"; }
count_in() { grep -c "$2" "$tmp/$1.log"; }

run_backend() {
	b=$1
	store=$2
	# One long-lived server keeps the store's lease reaper going (the
	# store reaps expired leases while some process renews or watches).
	out=$("$DYN_BIN" rpc ls nothing-here --store "$store" 2>"$tmp/ls-empty.err"); rc=$?
	err=$(cat "$tmp/ls-empty.err")
	check "$b: an empty listing: nothing on stdout, stderr names the path and the store" \
		'[ $rc -eq 0 ] && [ -z "$out" ] && contains "$err" "no instances under nothing-here in $store"'
	serve keeper-$b keeper 10000 || { fail "$b/setup" "keeper server did not start"; return; }
	serve a-$b c "$TTL_MS" || { fail "$b/setup" "server did not start"; return; }
	apid=$spid
	aid=$(instance_of "a-$b")

	# 1. discovery + 10,000 frames in order
	out=$(timeout 30 "$DYN_BIN" rpc call itest/c/stream '{"count":10000}' --count-only \
		--store "$store" --timeout 20 2>"$tmp/call.err")
	rc=$?
	if [ "$rc" -eq 0 ] && [ "$out" = "10000 frames, in order" ]; then
		pass "$b/stream_10000"
	else
		fail "$b/stream_10000" "rc=$rc out='$out' err='$(tail -2 "$tmp/call.err")'"
	fi

	# 1b. a stale record (an instance that died before its lease expired)
	# is skipped: every call still reaches the live instance
	stale=v1/instances/itest/c/stream/00000000deadbeef
	"$DYN_BIN" store put --store "$store" "$stale" \
		'{"namespace":"itest","component":"c","endpoint":"stream","instance_id":"00000000deadbeef","address":"127.0.0.1:1","transport":"tcp","pid":1,"metadata":{}}' \
		>/dev/null 2>&1
	ok=0
	for i in 1 2 3 4 5 6; do
		out=$(timeout 20 "$DYN_BIN" rpc call itest/c/stream '{"count":5}' --count-only \
			--store "$store" --timeout 10 2>>"$tmp/call.err")
		[ "$out" = "5 frames, in order" ] && ok=$((ok + 1))
	done
	"$DYN_BIN" store rm --store "$store" "$stale" >/dev/null 2>&1
	if [ "$ok" -eq 6 ]; then
		pass "$b/stale_record_skipped"
	else
		fail "$b/stale_record_skipped" "$ok of 6 calls succeeded: $(tail -2 "$tmp/call.err")"
	fi

	# 1c. records whose address no client could use are skipped by
	# 'dyn rpc ls' (with a warning naming the key) and by 'dyn rpc call'
	for bad in nocolon:00000000000000b1 127.0.0.1:99999:00000000000000b2; do
		id=${bad##*:}
		"$DYN_BIN" store put --store "$store" "v1/instances/itest/c/stream/$id" \
			"{\"namespace\":\"itest\",\"component\":\"c\",\"endpoint\":\"stream\",\"instance_id\":\"$id\",\"address\":\"${bad%:*}\",\"transport\":\"tcp\",\"pid\":1,\"metadata\":{}}" \
			>/dev/null 2>&1
	done
	lsout=$("$DYN_BIN" rpc ls itest/c/stream --store "$store" 2>"$tmp/lsbad.err")
	n=$(printf '%s\n' "$lsout" | grep -c "itest/c/stream")
	check "$b/bad_address_not_listed" \
		'[ "$n" -eq 1 ] && ! contains "$lsout" nocolon && ! contains "$lsout" 99999 &&
		 grep -q "skipping malformed instance record v1/instances/itest/c/stream/00000000000000b1: bad address" "$tmp/lsbad.err" ||
		 { printf "%s\n" "$lsout"; cat "$tmp/lsbad.err"; false; } >&2'
	ok=0
	for i in 1 2 3 4 5 6; do
		out=$(timeout 20 "$DYN_BIN" rpc call itest/c/stream '{"count":5}' --count-only \
			--store "$store" --timeout 10 2>>"$tmp/call.err")
		[ "$out" = "5 frames, in order" ] && ok=$((ok + 1))
	done
	"$DYN_BIN" store rm --store "$store" v1/instances/itest/c/stream/00000000000000b1 >/dev/null 2>&1
	"$DYN_BIN" store rm --store "$store" v1/instances/itest/c/stream/00000000000000b2 >/dev/null 2>&1
	check "$b/bad_address_skipped_by_call" '[ "$ok" -eq 6 ] || { tail -2 "$tmp/call.err" >&2; false; }'

	# 2. cancel by --timeout: the server stops producing and says so
	before=$(count_in "a-$b" 'stopped early.*cancelled by the client')
	out=$(timeout 30 "$DYN_BIN" rpc call itest/c/stream '{"count":1000000,"interval_ms":1}' \
		--count-only --store "$store" --timeout 0.5 2>"$tmp/call.err")
	rc=$?
	if [ "$rc" -ne 1 ]; then
		fail "$b/cancel_timeout" "expected exit 1 after --timeout, got $rc ($out)"
	elif wait_ms 3 sh -c "[ \$(grep -c 'stopped early.*cancelled by the client' '$tmp/a-$b.log') -gt $before ]"; then
		pass "$b/cancel_timeout"
	else
		fail "$b/cancel_timeout" "server log has no 'stopped early' line: $(tail -3 "$tmp/a-$b.log")"
	fi

	# 3. cancel by SIGINT
	before=$(count_in "a-$b" 'stopped early.*cancelled by the client')
	started=$(count_in "a-$b" 'stream [0-9]* from')
	spawn "$DYN_BIN" rpc call itest/c/stream '{"count":1000000,"interval_ms":1}' \
		--count-only --store "$store" >"$tmp/int.out" 2>&1
	cpid=$LAST_PID
	# Interrupt once the server has the stream going.
	wait_ms 5 sh -c "[ \$(grep -c 'stream [0-9]* from' '$tmp/a-$b.log') -gt $started ]"
	sleep 0.2
	kill -INT "$cpid" 2>/dev/null
	wait_ms 5 sh -c "! kill -0 $cpid 2>/dev/null"
	wait "$cpid" 2>/dev/null
	crc=$?
	if wait_ms 3 sh -c "[ \$(grep -c 'stopped early.*cancelled by the client' '$tmp/a-$b.log') -gt $before ]"; then
		pass "$b/cancel_sigint"
	else
		fail "$b/cancel_sigint" "client exit $crc; no 'stopped early' line: $(tail -3 "$tmp/a-$b.log")"
	fi

	# 4. graceful shutdown: SIGTERM deregisters at once (TTL is 10 s here)
	serve g-$b g 10000 || { fail "$b/graceful_term" "server did not start"; return; }
	gpid=$spid
	gid=$(instance_of "g-$b")
	if ! listed itest/g "$gid"; then
		fail "$b/graceful_term" "instance $gid not listed while serving"
	else
		t0=$(now_ms)
		kill -TERM "$gpid"
		if wait_ms 5 not_listed itest/g "$gid"; then
			dt=$(( $(now_ms) - t0 ))
			if [ "$dt" -lt 1500 ]; then
				pass "$b/graceful_term"
			else
				fail "$b/graceful_term" "record went after $dt ms (lease TTL 10000 ms)"
			fi
		else
			fail "$b/graceful_term" "record still listed 5 s after SIGTERM"
		fi
		wait_ms 5 sh -c "! kill -0 $gpid 2>/dev/null" || fail "$b/graceful_term" "server did not exit"
		grep -q 'deregistered' "$tmp/g-$b.log" || fail "$b/graceful_term" "no 'deregistered' in log"
	fi

	# 5. crash: SIGKILL; the record must vanish within TTL + 1 s
	if ! listed itest/c "$aid"; then
		fail "$b/crash_ttl" "instance $aid not listed before the kill"
		return
	fi
	t0=$(now_ms)
	kill -KILL "$apid"
	if wait_ms $(( TTL_MS / 1000 + 3 )) not_listed itest/c "$aid"; then
		dt=$(( $(now_ms) - t0 ))
		if [ "$dt" -le $(( TTL_MS + 1000 )) ]; then
			pass "$b/crash_ttl"
			echo "  ($b: record gone ${dt} ms after SIGKILL, lease TTL ${TTL_MS} ms)"
		else
			fail "$b/crash_ttl" "record went after $dt ms > TTL + 1000 ms"
		fi
	else
		fail "$b/crash_ttl" "record still listed $(( TTL_MS / 1000 + 3 )) s after SIGKILL"
	fi
}

if [ ! -x "$DYN_BIN" ]; then
	fail setup "no dyn binary at $DYN_BIN"
	exit 1
fi
mkdir -p "$tmp/file"
run_backend file "file://$tmp/file"
run_backend sqlite "sqlite://$tmp/store.db"
# Under SAN=1 the processes report memory errors and leaks on stderr.
reports=$(grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$tmp"/*.log "$tmp"/*.err \
	"$tmp"/*.out 2>/dev/null)
check "no sanitizer reports from any process" '[ -z "$reports" ] || { head -20 $reports >&2; false; }'
finish
