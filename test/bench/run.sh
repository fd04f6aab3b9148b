#!/bin/sh
# test/bench/run.sh - run every benchmark ('make bench'): each script
# test/bench/*.sh other than this one, in name order.  A script prints its
# own table with ratios against a baseline measured in the same run, and
# runs whatever it needs (dyn subcommands, or programs built from
# test/bench/*.c into $BUILD/bench, with their arguments).
# Exit status 1 if any script failed.
set -u
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
BUILD=${BUILD:-build/rel}
export DYN_BIN BUILD
status=0
for s in test/bench/*.sh; do
	[ "$(basename "$s")" = run.sh ] && continue
	echo "== $(basename "$s" .sh)"
	sh "$s" || { echo "bench $(basename "$s"): failed"; status=1; }
	echo
done
exit $status
