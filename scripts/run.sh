#!/bin/sh
# scripts/run.sh - 'make run': a frontend and one worker on the embedded
# file store, until Ctrl-C.  Usage: scripts/run.sh DYN_BINARY [MODEL]
# Environment: PORT (HTTP port, default 8000), DYN_STORE (default: a
# private file store under build/run-store), ENGINE (the worker's
# --engine: auto, the default, runs the model on the builtin engine when
# it has weights; echo streams the prompt back).
set -u
DYN=${1:?usage: scripts/run.sh DYN [MODEL]}
MODEL=${2:-}
PORT=${PORT:-8000}
if [ -z "$MODEL" ]; then
	if [ -d ../shared/models/stories260K ]; then
		MODEL=../shared/models/stories260K
	else
		echo "make run: no MODEL given and ../shared/models/stories260K is absent;" >&2
		echo "          try: make run MODEL=ORG/NAME (a hub id) or MODEL=DIR" >&2
		exit 2
	fi
fi
export DYN_STORE=${DYN_STORE:-file://$(pwd)/build/run-store}
ENGINE=${ENGINE:-auto}

"$DYN" serve --model "$MODEL" --engine "$ENGINE" --system-port 0 & wpid=$!
"$DYN" frontend --http-port "$PORT" & fpid=$!
stop() {
	trap - INT TERM EXIT
	kill -TERM "$fpid" "$wpid" 2>/dev/null
	wait "$fpid" "$wpid" 2>/dev/null
	exit 0
}
trap stop INT TERM EXIT

name=$(basename "$MODEL")
case "$MODEL" in */*/*|/*|.*) ;; */*) name=$MODEL ;; esac
i=0
while ! curl -sf "http://127.0.0.1:$PORT/v1/models" 2>/dev/null | grep -q "\"$name\""; do
	i=$((i + 1))
	if [ "$i" -gt 300 ] || ! kill -0 "$wpid" 2>/dev/null || ! kill -0 "$fpid" 2>/dev/null; then
		echo "make run: the frontend or the worker did not come up" >&2
		stop
	fi
	sleep 0.1
done
cat <<MSG

Ready.  Try (Ctrl-C stops both):

  curl http://127.0.0.1:$PORT/v1/completions -H 'Content-Type: application/json' \\
    -d '{"model":"$name","prompt":"Once upon a time","max_tokens":100}'

  curl http://127.0.0.1:$PORT/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"$name","messages":[{"role":"user","content":"Once upon a time"}],"stream":true}'

MSG
wait "$fpid" "$wpid"
