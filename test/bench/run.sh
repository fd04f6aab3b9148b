#!/bin/sh
# test/bench/run.sh - run every benchmark ('make bench'): each script
# $BENCH_DIR/*.sh (default test/bench) other than this one, in name order
# (only those named in BENCH=a,b when it is set; a name without a script
# is an error: exit 2, listing the scripts there are).  A script prints
# its own table with ratios against a baseline measured in the same run,
# and runs whatever it needs (dyn subcommands, or programs built from
# test/bench/*.c into $BUILD/bench, with their arguments).
#
# Figures: besides its table, a script reports each headline figure as
# one line on stdout
#     FIGURE name value unit ratio baseline
# (exactly these 5 fields; name and unit without spaces; value a number;
# ratio = value / baseline's value, or "-" when there is no baseline
# (baseline "-" too, or the name of a baseline that could not be
# measured); baseline names what it was compared with).
# A FIGURE line of any other shape is reported and counts as the script
# failing (its well-formed figures are kept).
# This script collects them, prints them at the end as
#     name: value unit (ratio x baseline)
# and writes them to $BENCH_OUT/summary.json (default build/bench):
#     {"figures":[{"name","value","unit","ratio","baseline","script"}...],
#      "failed":[scripts that failed]}
# Exit status 1 if any script failed, 2 for an unknown name in BENCH.
set -u
DYN_BIN=${DYN_BIN:-$(pwd)/dyn}
BUILD=${BUILD:-build/rel}
BENCH_OUT=${BENCH_OUT:-build/bench}
BENCH_DIR=${BENCH_DIR:-test/bench}
export DYN_BIN BUILD BENCH_OUT

# The scripts there are, and every name asked for must be one of them.
names=
for s in "$BENCH_DIR"/*.sh; do
	[ -f "$s" ] || continue
	name=$(basename "$s" .sh)
	[ "$name" = run ] && continue
	names="$names $name"
done
if [ -n "${BENCH:-}" ]; then
	unknown=
	for want in $(echo "$BENCH" | tr ',' ' '); do
		case " $names " in *" $want "*) ;; *) unknown="$unknown $want" ;; esac
	done
	if [ -n "$unknown" ]; then
		echo "run.sh: BENCH names no such benchmark:$unknown (there are:$names)" >&2
		exit 2
	fi
fi

mkdir -p "$BENCH_OUT"
figs="$BENCH_OUT/figures.txt"
: >"$figs"
failed=
status=0
for name in $names; do
	case ",${BENCH:-$name}," in *",$name,"*) ;; *) continue ;; esac
	echo "== $name"
	out="$BENCH_OUT/$name.out"
	sh "$BENCH_DIR/$name.sh" >"$out" 2>&1
	rc=$?
	grep -v '^FIGURE ' "$out"
	# Well-formed figures go to the list; others are shown and fail it.
	bad=$(grep '^FIGURE ' "$out" | awk -v figs="$figs" -v name="$name" '
	function isnum(s) { return s ~ /^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
	{
		if (NF == 6 && isnum($3) && (isnum($5) || $5 == "-"))
			print $0 " " name >>figs
		else
			print
	}')
	if [ -n "$bad" ]; then
		echo "$bad" | sed "s/^/bench $name: malformed figure line: /"
		[ "$rc" -ne 0 ] || rc=1
	fi
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
