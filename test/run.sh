#!/bin/bash
# test/run.sh - run every test and print one summary line "N passed, N failed".
#
# Unit tests are the binaries in $BUILD/test (each case in a process of its
# own, see test/unit/check.h); integration tests are the scripts
# test/integration/*.sh (and *.py), the layering check among them.  Every test program prints lines
# "PASS: name" / "FAIL: name: why" (or "SKIP: name: why"); a program that
# exits non-zero without printing a FAIL line counts as one failure, so a
# crash is never silent.  Each program runs under a time limit.
#
# Integration tests run TEST_JOBS at a time (most of their time is spent
# waiting on the processes they start); those named in TEST_SOLO (the ones
# that build network namespaces, or whose checks are about timing under
# load) run alone.  Each program's report is printed whole as it ends.
#
# Environment: DYN_BIN (the binary under test), BUILD, PYTHON, TEST_FILTER
# (only run test programs whose name contains it), TEST_JOBS (default 1),
# TEST_VERBOSE=1.

set -u
BUILD=${BUILD:-build/rel}
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
PYTHON=${PYTHON:-python3}
export DYN_BIN BUILD PYTHON
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
TEST_JOBS=${TEST_JOBS:-1}
TEST_SOLO=${TEST_SOLO:-netns chaos frontend_abuse}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dyn-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0

# run_one NAME COMMAND...: run it, keep its counts in $tmp/N.res and print
# its report (under a lock: reports of programs run at once never mix).
run_one() {
	local name=$1 id=$2 start rc p f s secs
	shift 2
	local out="$tmp/$id.out" err="$tmp/$id.err"
	start=$(date +%s)
	timeout -k 5 "$TEST_TIMEOUT" "$@" >"$out" 2>"$err"
	rc=$?
	p=$(grep -c '^PASS: ' "$out")
	f=$(grep -c '^FAIL: ' "$out")
	s=$(grep -c '^SKIP: ' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		if [ "$rc" -eq 124 ]; then why="timed out after ${TEST_TIMEOUT}s"; else why="exited with status $rc"; fi
		echo "FAIL: $name: $why" >>"$out"
		f=$((f + 1))
	fi
	echo "$p $f $s" >"$tmp/$id.res"
	secs=$(( $(date +%s) - start ))
	{
		flock 9
		if [ "$f" -gt 0 ]; then
			echo "--- $name: $p passed, $f failed (${secs}s)"
			grep -E '^(FAIL|SKIP): ' "$out"
			echo "--- stderr (last 30 lines):"
			tail -30 "$err"
		else
			echo "--- $name: $p passed${s:+, $s skipped} (${secs}s)" | sed 's/, 0 skipped//'
			[ "${TEST_VERBOSE:-0}" = 1 ] && cat "$out"
			grep '^SKIP: ' "$out"
		fi
	} 9>>"$tmp/lock"
}

# schedule NAME COMMAND...: run it now, alone, or beside others.
schedule() {
	local name=$1 w solo=0
	case "$name" in *"${TEST_FILTER:-}"*) ;; *) return ;; esac
	n=$((n + 1))
	for w in $TEST_SOLO; do
		case "$name" in *"$w"*) solo=1 ;; esac
	done
	if [ "$TEST_JOBS" -le 1 ] || [ "$solo" = 1 ]; then
		wait
		shift
		run_one "$name" "$n" "$@"
		return
	fi
	while [ "$(jobs -rp | wc -l)" -ge "$TEST_JOBS" ]; do
		wait -n
	done
	shift
	run_one "$name" "$n" "$@" &
}

for t in "$BUILD"/test/*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	schedule "unit/$(basename "$t")" "$t"
done
wait	# unit tests before the integration tests that rely on them
for t in test/integration/*.sh test/integration/*.py; do
	[ -f "$t" ] || continue
	[ "$(basename "$t")" = lib.sh ] && continue	# sourced helpers, not a test
	case "$t" in
	*.sh) schedule "integration/$(basename "$t")" sh "$t" ;;
	*.py) schedule "integration/$(basename "$t")" "$PYTHON" "$t" ;;
	esac
done
wait

passed=0 failed=0 skipped=0
for r in "$tmp"/*.res; do
	[ -f "$r" ] || continue
	read -r p f s <"$r"
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
expected=$n
got=$(find "$tmp" -name '*.res' | wc -l)
if [ "$got" -ne "$expected" ]; then
	echo "FAIL: test/run.sh: $((expected - got)) test program(s) left no result"
	failed=$((failed + expected - got))
fi

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
