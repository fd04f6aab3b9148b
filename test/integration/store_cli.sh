#!/bin/sh
# store_cli.sh - "dyn store" as a user meets it, on both embedded backends:
# put/get/ls/rm, exit statuses, --ttl expiry, the DYN_STORE fallback, and
# "watch" printing the changes another process makes.  Every wait is
# bounded; lib.sh kills every spawned process on exit.
set -u
. "$(dirname "$0")/lib.sh"

ms() { date +%s%3N; }

# until_ok TENTHS CMD...: run CMD every 0.1 s until it succeeds, at most
# TENTHS times.
until_ok() {
	n=$1; shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

for backend in file sqlite; do
	case $backend in
	file) url="file://$TMP/file-store" ;;
	sqlite) url="sqlite://$TMP/sqlite-store/store.db" ;;
	esac
	S() { "$DYN_BIN" store --store "$url" "$@"; }
	t=$backend

	# --- put, get, ls, rm
	S put v1/a/1 one && S put v1/a/2 'two words' && S put v1/b/1 other && S put "v1/a/tab" 'x	y'
	rc=$?
	out=$(S get v1/a/2)
	check "$t: put then get" '[ $rc -eq 0 ] && [ "$out" = "two words" ]'
	out=$(S ls v1/a/)
	want=$(printf 'v1/a/1\tone\nv1/a/2\ttwo words\nv1/a/tab\tx\\ty')
	check "$t: ls PREFIX prints sorted key<TAB>value lines" '[ "$out" = "$want" ]'
	out=$(S ls | wc -l)
	check "$t: ls without prefix lists everything" '[ "$out" -eq 4 ]'
	out=$(S ls v1/none/ 2>"$TMP/ls-empty.err"); rc=$?
	err=$(cat "$TMP/ls-empty.err")
	check "$t: an empty listing: nothing on stdout, stderr names the prefix and the store" \
		'[ $rc -eq 0 ] && [ -z "$out" ] && contains "$err" "no keys under v1/none/ in $url"'
	S ls --json v1/a/ >"$TMP/ls.json"
	check "$t: ls --json" '"$PYTHON" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r[\"key\"] for r in rows] == [\"v1/a/1\", \"v1/a/2\", \"v1/a/tab\"], rows
assert rows[2][\"value\"] == \"x\ty\"
assert all(isinstance(r[\"revision\"], int) and r[\"revision\"] > 0 for r in rows)
" "$TMP/ls.json"'
	printf 'from\nstdin' | S put v1/stdin -
	out=$(S get v1/stdin)
	check "$t: put KEY - reads stdin" '[ "$out" = "$(printf "from\nstdin")" ]'
	S rm v1/a/1; rc=$?
	S get v1/a/1 >/dev/null 2>&1; rc2=$?
	check "$t: rm deletes" '[ $rc -eq 0 ] && [ $rc2 -eq 1 ]'
	out=$(DYN_STORE="$url" "$DYN_BIN" store get v1/b/1)
	check "$t: DYN_STORE is the default for --store" '[ "$out" = other ]'

	# --- exit statuses
	err=$(S get v1/missing 2>&1); rc=$?
	check "$t: get of a missing key: exit 1 with a message" \
		'[ $rc -eq 1 ] && contains "$err" "v1/missing" && contains "$err" "no such key"'
	S rm v1/missing 2>/dev/null; rc=$?
	check "$t: rm of a missing key: exit 1" '[ $rc -eq 1 ]'
	S 2>/dev/null; rc=$?
	check "$t: no verb: exit 2" '[ $rc -eq 2 ]'
	err=$(S lst 2>&1); rc=$?
	check "$t: unknown verb: exit 2, one line, suggestion" \
		'[ $rc -eq 2 ] && contains "$err" "did you mean '\''ls'\''" && [ $(printf "%s\n" "$err" | wc -l) -eq 1 ]'
	S get 2>/dev/null; rc=$?
	S put onlykey 2>/dev/null; rc2=$?
	S get a b 2>/dev/null; rc3=$?
	check "$t: wrong number of arguments: exit 2" '[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ]'
	S put k v --ttl soon 2>/dev/null; rc=$?
	S put k v --ttl -1 2>/dev/null; rc2=$?
	S watch p/ --count -3 2>/dev/null; rc3=$?
	check "$t: bad option values: exit 2" '[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ]'
	S get '' 2>/dev/null; rc=$?
	check "$t: empty key: exit 2" '[ $rc -eq 2 ]'

	# --- put --ttl: nobody renews the lease, the key goes away
	start=$(ms)
	S put v1/ttl short-lived --ttl 1; rc=$?
	out=$(S get v1/ttl)
	check "$t: put --ttl 1: present at first" '[ $rc -eq 0 ] && [ "$out" = short-lived ]'
	until_ok 25 sh -c '! "$0" store --store "$1" get v1/ttl' "$DYN_BIN" "$url"
	took=$(( $(ms) - start ))
	S get v1/ttl >/dev/null 2>&1; rc=$?
	check "$t: put --ttl 1: gone within 2 s (took ${took} ms)" '[ $rc -eq 1 ] && [ $took -le 2000 ]'

	# --- watch: the changes another process makes, as JSON lines
	wurl="${url}-watch"
	case $backend in sqlite) wurl="sqlite://$TMP/sqlite-store/watch.db" ;; esac
	W() { "$DYN_BIN" store --store "$wurl" "$@"; }
	W put w/pre x
	spawn "$DYN_BIN" store --store "$wurl" watch w/ >"$TMP/watch.$t" 2>"$TMP/watch.$t.err"
	watcher=$LAST_PID
	if until_ok 50 grep -q '"synced"' "$TMP/watch.$t"; then
		W put w/a 1 && W put w/b '{"j":2}' && W rm w/a && W put other/x y && W put w/ttl t --ttl 0.3
		until_ok 50 lines "$TMP/watch.$t" 7
		want='{"type":"put","key":"w/pre","value":"x","revision":1}
{"type":"synced"}
{"type":"put","key":"w/a","value":"1","revision":2}
{"type":"put","key":"w/b","value":"{\"j\":2}","revision":3}
{"type":"delete","key":"w/a","revision":4}
{"type":"put","key":"w/ttl","value":"t","revision":6}
{"type":"delete","key":"w/ttl","revision":7}'
		out=$(cat "$TMP/watch.$t")
		check "$t: watch prints snapshot, synced, then puts and deletes of another process" \
			'[ "$out" = "$want" ] || { printf "got:\n%s\n" "$out" >&2; false; }'
	else
		fail "$t: watch prints snapshot, synced, then changes" "no synced line within 5 s: $(cat "$TMP/watch.$t.err")"
	fi
	kill -INT "$watcher" 2>/dev/null
	until_ok 50 sh -c '! kill -0 "$0"' "$watcher"
	wait "$watcher" 2>/dev/null; rc=$?
	check "$t: watch exits 0 on SIGINT" '[ $rc -eq 0 ]'

	timeout 10 "$DYN_BIN" store --store "$wurl" watch w/ --count 2 >"$TMP/count.$t" 2>/dev/null; rc=$?
	n=$(grep -c '"type":"put"' "$TMP/count.$t")
	check "$t: watch --count N exits after N events" '[ $rc -eq 0 ] && [ "$n" -eq 2 ]'
done

err=$("$DYN_BIN" store --store etcd://127.0.0.1 ls 2>&1); rc=$?
check "a malformed etcd:// URL is a usage error" \
	'[ $rc -eq 2 ] && contains "$err" "etcd://127.0.0.1" && contains "$err" "HOST:PORT"'
err=$("$DYN_BIN" store --store http://127.0.0.1/x ls 2>&1); rc=$?
check "unknown scheme names the accepted ones" \
	'[ $rc -eq 2 ] && contains "$err" "file://" && contains "$err" "sqlite://" &&
	 contains "$err" "etcd://"'

# --- a store that is not one: a runtime failure (exit 1), reported on one
# line that names the store, by every command that opens it; a malformed
# URL stays a usage error (exit 2).
mkdir -p "$TMP/bad-file"
printf 'not a store\nsecond line\001\n' >"$TMP/bad-file/FORMAT"
head -c 4096 /dev/zero | tr '\0' 'x' >"$TMP/bad.db"
for url in "file://$TMP/bad-file" "sqlite://$TMP/bad.db"; do
	for cmd in "store ls" "store get k" "store put k v" "rpc ls" "rpc call a/b/c"; do
		# shellcheck disable=SC2086 # cmd is split on purpose
		err=$(timeout 20 "$DYN_BIN" $cmd --store "$url" 2>&1 >/dev/null); rc=$?
		check "corrupt store $url: dyn $cmd exits 1 with one line naming it" \
			'[ $rc -eq 1 ] && contains "$err" "$url" && [ $(printf "%s\n" "$err" | wc -l) -eq 1 ] || { printf "rc=%s err=%s\n" "$rc" "$err" >&2; false; }'
	done
	err=$(timeout 20 "$DYN_BIN" store --store "$url" watch p/ --count 1 2>&1 >/dev/null); rc=$?
	check "corrupt store $url: dyn store watch exits 1" '[ $rc -eq 1 ] && contains "$err" "$url"'
	err=$(timeout 20 "$DYN_BIN" rpc serve --port 0 --store "$url" 2>&1 >/dev/null); rc=$?
	check "corrupt store $url: dyn rpc serve exits 1" '[ $rc -eq 1 ] && contains "$err" "$url"'
done
err=$("$DYN_BIN" store --store "file://$TMP/bad-file" ls 2>&1); rc=$?
check "corrupt FORMAT is quoted escaped" \
	'[ $rc -eq 1 ] && contains "$err" "FORMAT says '\''not a store\\nsecond line\\x01'\''"'
for cmd in "store ls" "rpc ls" "rpc call a/b/c"; do
	# shellcheck disable=SC2086
	"$DYN_BIN" $cmd --store "nourl" 2>/dev/null; rc=$?
	# shellcheck disable=SC2086
	"$DYN_BIN" $cmd --store "gopher://x" 2>/dev/null; rc2=$?
	check "malformed store URL: dyn $cmd exits 2" '[ $rc -eq 2 ] && [ $rc2 -eq 2 ]'
done
timeout 20 "$DYN_BIN" rpc serve --port 0 --store "gopher://x" 2>/dev/null; rc=$?
check "malformed store URL: dyn rpc serve exits 2" '[ $rc -eq 2 ]'
err=$(head -c 3000000 /dev/zero | "$DYN_BIN" store --store "file://$TMP/big" put big - 2>&1); rc=$?
check "store put - of a value over the limit: exit 1 naming the limit, nothing stored" \
	'[ $rc -eq 1 ] && contains "$err" "over the 1048576-byte limit" &&
	! "$DYN_BIN" store --store "file://$TMP/big" get big >/dev/null 2>&1'
err=$("$DYN_BIN" rpc call --address nocolon a/b/c 2>&1); rc=$?
check "dyn rpc call --address without a port: exit 2 naming the option" \
	'[ $rc -eq 2 ] && contains "$err" "--address"'
for cmd in "serve --engine echo --model $TOP/../shared/models/stories260K" "frontend --http-port 0" \
	"router --dump" "router --port 0"; do
	# shellcheck disable=SC2086
	timeout 20 "$DYN_BIN" $cmd --store "gopher://x" 2>/dev/null >/dev/null; rc=$?
	# shellcheck disable=SC2086
	timeout 20 "$DYN_BIN" $cmd --store "file://$TMP/bad-file" 2>/dev/null >/dev/null; rc2=$?
	check "dyn ${cmd%% *}: malformed store URL exits 2, corrupt store 1" '[ $rc -eq 2 ] && [ $rc2 -eq 1 ]'
done
finish
