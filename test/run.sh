#!/bin/sh
# test/run.sh - run every test and print one summary line "N passed, N failed".
#
# Unit tests are the binaries in $BUILD/test (each case in a process of its
# own, see test/unit/check.h); integration tests are the scripts
# test/integration/*.sh (and *.py), the layering check among them.  Every test program prints lines
# "PASS: name" / "FAIL: name: why" (or "SKIP: name: why"); a program that
# exits non-zero without printing a FAIL line counts as one failure, so a
# crash is never silent.  Each program runs under a time limit.
#
# Environment: DYN_BIN (the binary under test), BUILD, PYTHON, TEST_FILTER
# (only run test programs whose name contains it), TEST_VERBOSE=1.

set -u
BUILD=${BUILD:-build/rel}
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
PYTHON=${PYTHON:-python3}
export DYN_BIN BUILD PYTHON
TEST_TIMEOUT=${TEST_TIMEOUT:-300}

passed=0 failed=0 skipped=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dyn-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

run_one() {
	name=$1; shift
	case "$name" in *"${TEST_FILTER:-}"*) ;; *) return ;; esac
	start=$(date +%s)
	timeout -k 5 "$TEST_TIMEOUT" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	p=$(grep -c '^PASS: ' "$tmp/out")
	f=$(grep -c '^FAIL: ' "$tmp/out")
	s=$(grep -c '^SKIP: ' "$tmp/out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		if [ "$rc" -eq 124 ]; then why="timed out after ${TEST_TIMEOUT}s"; else why="exited with status $rc"; fi
		echo "FAIL: $name: $why" >>"$tmp/out"
		f=$((f + 1))
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	secs=$(( $(date +%s) - start ))
	if [ "$f" -gt 0 ]; then
		echo "--- $name: $p passed, $f failed (${secs}s)"
		grep -E '^(FAIL|SKIP): ' "$tmp/out"
		echo "--- stderr (last 30 lines):"
		tail -30 "$tmp/err"
	else
		echo "--- $name: $p passed${s:+, $s skipped} (${secs}s)" | sed 's/, 0 skipped//'
		[ "${TEST_VERBOSE:-0}" = 1 ] && cat "$tmp/out"
		grep '^SKIP: ' "$tmp/out"
	fi
}

for t in "$BUILD"/test/*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	run_one "unit/$(basename "$t")" "$t"
done
for t in test/integration/*.sh test/integration/*.py; do
	[ -f "$t" ] || continue
	[ "$(basename "$t")" = lib.sh ] && continue	# sourced helpers, not a test
	case "$t" in
	*.sh) run_one "integration/$(basename "$t")" sh "$t" ;;
	*.py) run_one "integration/$(basename "$t")" "$PYTHON" "$t" ;;
	esac
done

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
