#!/bin/sh
# engine.sh - CPU engine throughput ('make bench'): prefill tokens/s of a
# 512-token prompt and decode tokens/s (128 tokens, batch 1 and 8) on dummy
# weights of real model shapes in each weight format of DTYPES (default
# f32 bf16 f16 q8_0 q4_0: F32, BF16 and F16 computed with as stored; q8_0
# and q4_0 BF16 with the projections quantized at load, as --quantize
# does), with 1 and 2 threads, against baselines measured in the same run:
#   - the memory-bandwidth limit (engine_bench: weight bytes per token of
#     that format / measured read bandwidth; decode at batch 1 cannot beat
#     1.0), and the peak resident memory beyond weights + KV pool;
#   - llama.cpp on the same shapes in the same format: llama-bench pp512
#     and tg128 on a GGUF with random weights written by gguf_write.py
#     (its q8_0/q4_0 files keep the embedding F16, as dyn keeps it 16-bit).
#     llama-bench is built by 'make bench' from the llama-cpp-python sdist
#     into $LLAMACPP (see the Makefile); when that failed, the reason is
#     printed instead.  Each format's llama-bench runs right after dyn's
#     run of it, so both see the machine in the same state.  llama-bench
#     has no batched decode: batch 8 is compared with the bandwidth limit
#     only.
#   - dyn itself on F32 weights: each other format's speed relative to F32.
# QUICK=1: the smollm2-135m shape only (a few minutes); SHAPES, THREADS
# and DTYPES override.
# Figures: engine.SHAPE[.FMT].tN.{prefill,decode_b1}.llamacpp (ratio to
# llama.cpp in the same format), engine.SHAPE[.FMT].tN.decode_b{1,8}.bw
# (ratio to the bandwidth limit), engine.SHAPE[.FMT].tN.peak_rss_overhead
# (MB beyond weights + KV pool), engine.SHAPE.FMT.tN.{prefill,decode_b1,
# decode_b8}.vs_f32; FMT is bfloat16, float16, q8_0 or q4_0 (none for F32).
set -u
BUILD=${BUILD:-build/rel}
LLAMACPP=${LLAMACPP:-build/llamacpp}
GGUF_PYTHON=${GGUF_PYTHON:-build/gguf/bin/python}
MODELS=${MODELS:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/models}
if [ "${QUICK:-0}" = 1 ]; then
	SHAPES=${SHAPES:-smollm2-135m-shape}
else
	SHAPES=${SHAPES:-smollm2-135m-shape qwen3-0.6b-shape llama-3.2-1b-shape}
fi
THREADS=${THREADS:-1 2}
DTYPES=${DTYPES:-f32 bf16 f16 q8_0 q4_0}
HERE=$(dirname "$0")
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
status=0

# llama.cpp: one "LLAMA shape type threads pp512 tg128" line per run
llama_why=
if [ ! -x "$LLAMACPP/llama-bench" ]; then
	if [ -f "$LLAMACPP/FAILED" ]; then
		llama_why=$(cat "$LLAMACPP/FAILED")
	else
		llama_why="llama-bench not built (make bench builds it into $LLAMACPP)"
	fi
elif [ ! -x "$GGUF_PYTHON" ]; then
	llama_why="no gguf venv at $GGUF_PYTHON (make bench installs it)"
fi
: >"$TMPD/llama"
tcsv=$(echo $THREADS | tr ' ' ',')
# llama SHAPE TYPE: llama-bench pp512 and tg128 on a GGUF of that shape
# and type (written once into $LLAMACPP/gguf), appended to $TMPD/llama
llama() {
	gguf=$LLAMACPP/gguf/$1-$2.gguf
	if [ ! -s "$gguf" ]; then
		mkdir -p "$LLAMACPP/gguf"
		"$GGUF_PYTHON" "$HERE/gguf_write.py" "$MODELS/$1" "$gguf.tmp" "$2" &&
			mv "$gguf.tmp" "$gguf" || { status=1; return; }
	fi
	if ! "$LLAMACPP/llama-bench" -m "$gguf" -p 512 -n 128 -t "$tcsv" -r 2 -o csv \
		>"$TMPD/csv" 2>"$TMPD/llama.err"; then
		echo "llama-bench failed on $gguf:"
		tail -5 "$TMPD/llama.err"
		status=1
		return
	fi
	# columns by header name; pp rows have n_gen 0, tg rows n_prompt 0
	awk -F, -v shape="$1" -v type="$2" '
	function uq(s) { gsub(/"/, "", s); return s }
	NR == 1 { for (i = 1; i <= NF; i++) col[uq($i)] = i; next }
	{ t = uq($col["n_threads"]); ts = uq($col["avg_ts"]);
	  if (uq($col["n_gen"]) == 0) pp[t] = ts; else tg[t] = ts; seen[t] = 1 }
	END { for (t in seen) printf("LLAMA %s %s %s %s %s\n", shape, type, t, pp[t], tg[t]) }
	' "$TMPD/csv" >>"$TMPD/llama"
}

# dyn, then llama.cpp, for each shape and format
for shape in $SHAPES; do
	for dt in $DTYPES; do
		# shellcheck disable=SC2086
		"$BUILD/bench/engine_bench" --dtype "$dt" "$MODELS/$shape" $THREADS \
			>"$TMPD/dyn.$shape.$dt" || status=1
		grep -v '^DYN ' "$TMPD/dyn.$shape.$dt"
		[ -z "$llama_why" ] && llama "$shape" "$dt"
	done
done
# DYN shape DTYPE threads prefill b1 b8 bw_b1 bw_b8 rss_overhead_mb
cat "$TMPD"/dyn.* | grep '^DYN ' >"$TMPD/dyn"

echo
echo "dyn: other weight formats against F32 (same shapes, same threads)"
awk '
$3 == "F32" { f[$2 " " $4] = $5 " " $6 " " $7; next }
{ rows[NR] = $0 }
END {
	for (i in rows) {
		split(rows[i], r, " "); k = r[2] " " r[4]
		if (!(k in f)) continue
		split(f[k], b, " ")
		printf("%-20s %-4s threads %s  prefill %.2fx  decode b1 %.2fx  decode b8 %.2fx of F32\n",
		       r[2], r[3], r[4], r[5] / b[1], r[6] / b[2], r[7] / b[3])
		dt = tolower(r[3]) == "bf16" ? "bfloat16" : tolower(r[3]) == "f16" ? "float16" : tolower(r[3])
		printf("FIGURE engine.%s.%s.t%s.prefill.vs_f32 %.1f tokens/s %.3f dyn_f32\n", r[2], dt, r[4], r[5], r[5] / b[1])
		printf("FIGURE engine.%s.%s.t%s.decode_b1.vs_f32 %.1f tokens/s %.3f dyn_f32\n", r[2], dt, r[4], r[6], r[6] / b[2])
		printf("FIGURE engine.%s.%s.t%s.decode_b8.vs_f32 %.1f tokens/s %.3f dyn_f32\n", r[2], dt, r[4], r[7], r[7] / b[3])
	}
}' "$TMPD/dyn"

if [ -z "$llama_why" ]; then
	echo
	echo "llama.cpp $(cat "$LLAMACPP/VERSION" 2>/dev/null || echo "(llama-cpp-python sdist)"): llama-bench pp512 / tg128, random weights"
	sort -k2,2 -k3,3 -k4,4n "$TMPD/llama" | awk '{
		printf("%-20s %-4s threads %s  prefill 512 %8.1f tokens/s  decode %7.1f tokens/s\n",
		       $2, toupper($3), $4, $5, $6) }'
fi

echo
echo "dyn vs llama.cpp (same shape, format and threads) and vs the bandwidth limit of the format's bytes"
if [ -n "$llama_why" ]; then
	echo "llama.cpp baseline not measured: $llama_why"
fi
printf "%-20s %-4s %-2s %18s %18s %9s %9s %8s\n" shape fmt t "prefill vs llama" "decode vs llama" "b1 vs bw" "b8 vs bw" "RSS+MB"
sort -k2,2 -k3,3 -k4,4n "$TMPD/dyn" | awk '
FILENAME ~ /llama$/ { pp[$2 " " $3 " " $4] = $5; tg[$2 " " $3 " " $4] = $6; next }
{
	k = $2 " " tolower($3) " " $4
	fmt = tolower($3) == "f32" ? "" : tolower($3) == "bf16" ? ".bfloat16" : tolower($3) == "f16" ? ".float16" : "." tolower($3)
	if (k in pp && pp[k] > 0 && tg[k] > 0) {
		rp = sprintf("%.2fx", $5 / pp[k]); rd = sprintf("%.2fx", $6 / tg[k])
		printf("FIGURE engine.%s%s.t%s.prefill.llamacpp %.1f tokens/s %.3f llama.cpp_%s_pp512\n", $2, fmt, $4, $5, $5 / pp[k], tolower($3))
		printf("FIGURE engine.%s%s.t%s.decode_b1.llamacpp %.1f tokens/s %.3f llama.cpp_%s_tg128\n", $2, fmt, $4, $6, $6 / tg[k], tolower($3))
	} else {
		rp = "-"; rd = "-"
	}
	line[++n] = sprintf("%-20s %-4s %-2s %18s %18s %9.2f %9.2f %8.1f", $2, $3, $4,
			    sprintf("%.0f/%s", $5, k in pp ? sprintf("%.0f %s", pp[k], rp) : "-"),
			    sprintf("%.1f/%s", $6, k in tg ? sprintf("%.1f %s", tg[k], rd) : "-"), $8, $9, $10)
}
END { for (i = 1; i <= n; i++) print line[i] }' "$TMPD/llama" -
exit $status
