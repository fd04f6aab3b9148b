# lib.sh - shared helpers for the integration scripts (sourced, POSIX sh).
#
#   check NAME EXPR       eval the shell expression EXPR (may use && and ||);
#                         print PASS: NAME or FAIL: NAME with EXPR
#   fail NAME WHY / skip NAME WHY
#   contains HAYSTACK NEEDLE
#   spawn CMD...          start a background process that cleanup kills
#   wait_for SECONDS CMD  retry CMD every 0.1 s until it succeeds
#   finish                exit status: non-zero if anything failed
# $TMP is a private temp dir removed on exit; $TOP is the repository root.

TOP=$(cd "$(dirname "$0")/../.." && pwd)
DYN_BIN=${DYN_BIN:-$TOP/dyn}
PYTHON=${PYTHON:-python3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dyn-it.XXXXXX")
SCRIPT=$(basename "$0" .sh)
PIDS=
FAILED=0

cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "PASS: $SCRIPT/$1"; }
fail() { echo "FAIL: $SCRIPT/$1: $2"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP: $SCRIPT/$1: $2"; }
check() {
	if eval "$2"; then pass "$1"; else fail "$1" "check failed: $2"; fi
}
contains() { case "$1" in *"$2"*) return 0 ;; *) return 1 ;; esac; }
spawn() { "$@" & PIDS="$PIDS $!"; LAST_PID=$!; }
wait_for() {
	limit=$1; shift
	end=$(( $(date +%s) + limit ))
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.1
	done
}
finish() { [ "$FAILED" -eq 0 ]; exit $?; }
