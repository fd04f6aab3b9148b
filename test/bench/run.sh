#!/bin/sh
# test/bench/run.sh - run every benchmark ('make bench'): each script
# test/bench/*.sh other than this one, in name order (only those named in
# BENCH=a,b when it is set).  A script prints its
# own table with ratios against a baseline measured in the same run, and
# runs whatever it needs (dyn subcommands, or programs built from
# test/bench/*.c into $BUILD/bench, with their arguments).
#
# Figures: besides its table, a script reports each headline figure as
# one line on stdout
#     FIGURE name value unit ratio baseline
# (name and unit without spaces; ratio = value / baseline's value, or "-"
# when there is no baseline; baseline names what it was compared with).
# This script collects them, prints them at the end as
#     name: value unit (ratio x baseline)
# and writes them to $BENCH_OUT/summary.json (default build/bench):
#     {"figures":[{"name","value","unit","ratio","baseline","script"}...],
#      "failed":[scripts that failed]}
# Exit status 1 if any script failed.
set -u
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
BUILD=${BUILD:-build/rel}
BENCH_OUT=${BENCH_OUT:-build/bench}
export DYN_BIN BUILD BENCH_OUT
mkdir -p "$BENCH_OUT"
figs="$BENCH_OUT/figures.txt"
: >"$figs"
failed=
status=0
for s in test/bench/*.sh; do
	name=$(basename "$s" .sh)
	[ "$name" = run ] && continue
	case ",${BENCH:-$name}," in *",$name,"*) ;; *) continue ;; esac
	echo "== $name"
	out="$BENCH_OUT/$name.out"
	sh "$s" >"$out" 2>&1
	rc=$?
	grep -v '^FIGURE ' "$out"
	grep '^FIGURE ' "$out" | sed "s/\$/ $name/" >>"$figs"
	if [ "$rc" -ne 0 ]; then
		echo "bench $name: failed"
		failed="$failed $name"
		status=1
	fi
	echo
done

echo "== figures"
awk '{ r = ($5 == "-") ? "" : sprintf(" (%s x %s)", $5, $6);
       printf("%s: %s %s%s\n", $2, $3, $4, r) }' "$figs"
awk -v failed="$failed" '
function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
function num(s) { return (s ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) ? s : "null" }
BEGIN { printf("{\"figures\":[") }
{ printf("%s\n{\"name\":%s,\"value\":%s,\"unit\":%s,\"ratio\":%s,\"baseline\":%s,\"script\":%s}",
	 NR > 1 ? "," : "", q($2), num($3), q($4), num($5), ($6 == "-") ? "null" : q($6), q($7)) }
END {
	printf("],\n\"failed\":[");
	n = split(failed, f, " ");
	for (i = 1; i <= n; i++) printf("%s%s", i > 1 ? "," : "", q(f[i]));
	printf("]}\n");
}' "$figs" >"$BENCH_OUT/summary.json"
echo "summary: $BENCH_OUT/summary.json"
exit $status
