#!/bin/sh
# scripts/run.sh - 'make run': a frontend and one worker on the embedded
# file store, until Ctrl-C.  Usage: scripts/run.sh DYN_BINARY [MODEL]
#
# MODEL is a hub id (ORG/NAME, downloaded on first use) or a folder; it
# defaults to ../shared/models/stories260K when that exists, else to the
# small hub model HuggingFaceTB/SmolLM2-135M-Instruct (downloaded once,
# with a progress bar).
# Environment:
#   PORT      HTTP port of the frontend (default 8000; 0 = any free port)
#   HTTP_HOST address the frontend listens on (default 127.0.0.1: a local
#             try-out has no API key; 0.0.0.0 or :: to serve other machines)
#   ENGINE    the worker's --engine: auto (default) runs the model on the
#             builtin engine when it has weights; echo streams the prompt back
#   DYN_STORE the store (default: a private file store under build/run-store)
#
# There is no time limit on start-up: a hub download or a slow weight load
# may take minutes, so the script waits as long as both processes are
# alive (the worker draws its own progress on stderr).  The served model
# name is the one the worker reports, never guessed from MODEL.
# Exit status: 0 after Ctrl-C (or SIGTERM) once both were up; non-zero
# when either process fails to start, stops on its own (even with status
# 0, e.g. the worker sent SIGTERM alone) or dies, or on Ctrl-C before
# ready.  The chat curl line is printed only when the worker says the model
# has a chat template.
set -u
DYN=${1:?usage: scripts/run.sh DYN [MODEL]}
MODEL=${2:-}
PORT=${PORT:-8000}
HTTP_HOST=${HTTP_HOST:-127.0.0.1}
ENGINE=${ENGINE:-auto}
HUB_DEFAULT=HuggingFaceTB/SmolLM2-135M-Instruct
if [ -z "$MODEL" ]; then
	if [ -d ../shared/models/stories260K ]; then
		MODEL=../shared/models/stories260K
	else
		MODEL=$HUB_DEFAULT
		echo "make run: no MODEL given and ../shared/models/stories260K is absent:" \
			"serving the hub model $MODEL (about 270 MB, downloaded once;" \
			"MODEL=ORG/NAME or MODEL=DIR to choose another)" >&2
	fi
fi
export DYN_STORE="${DYN_STORE:-file://$(pwd)/build/run-store}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dyn-run.XXXXXX") || exit 1
fpid='' wpid=''
# stop STATUS: stop both (SIGTERM; a second Ctrl-C kills them), reap, exit.
stop() {
	trap 'kill -KILL $fpid $wpid 2>/dev/null' INT TERM
	trap - EXIT
	kill -TERM $fpid $wpid 2>/dev/null
	# wait returns early when a trap runs; loop until both are reaped
	while kill -0 $fpid 2>/dev/null || kill -0 $wpid 2>/dev/null; do
		wait $fpid $wpid 2>/dev/null
	done
	rm -rf "$tmp"
	exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop 1' EXIT

# stdout goes to files to read the served name and the port from; stderr
# (logs, the download progress bar) stays on the terminal.
: >"$tmp/worker"; : >"$tmp/frontend"
"$DYN" serve --model "$MODEL" --engine "$ENGINE" --system-port 0 >"$tmp/worker" & wpid=$!
"$DYN" frontend --http-port "$PORT" --http-host "$HTTP_HOST" >"$tmp/frontend" & fpid=$!

# died: true when the worker or the frontend has exited; sets who and st
# (its exit status).
died() {
	for who in worker frontend; do
		if [ "$who" = worker ]; then pid=$wpid; else pid=$fpid; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			st=$?
			return 0
		fi
	done
	return 1
}

# The worker's ready line names the served model and says whether it has a
# chat template; the frontend's gives the URL to reach it from here
# (wildcard addresses as loopback, IPv6 in brackets).
name='' url='' chat=no waited=0
while :; do
	if [ -z "$name" ]; then
		line=$(grep -m1 '^worker ' "$tmp/worker")
		name=$(printf '%s\n' "$line" | sed -n 's/^worker \(.*\) (engine [^)]*) instance .*/\1/p')
		case "$line" in *'; chat template: yes') chat=yes ;; esac
		[ -n "$name" ] && printf '%s\n' "$line"
	fi
	if [ -z "$url" ]; then
		line=$(grep -m1 '^frontend listening on ' "$tmp/frontend")
		url=$(printf '%s\n' "$line" | sed -n 's|^frontend listening on \(http://[^ ]*:[0-9][0-9]*\) .*|\1|p')
		[ -n "$url" ] && printf '%s\n' "$line"
	fi
	if [ -n "$name" ] && [ -n "$url" ] &&
	   curl -sf --max-time 5 "$url/v1/models" 2>/dev/null | grep -qF "\"id\":\"$name\""; then
		break
	fi
	if died; then
		if [ "$st" -eq 0 ]; then
			echo "make run: the $who stopped before it was ready" >&2
		else
			echo "make run: the $who exited with status $st before it was ready" >&2
		fi
		stop 1
	fi
	waited=$((waited + 1))
	[ "$waited" -eq 25 ] && [ -z "$name" ] &&
		echo "make run: waiting for the worker to load $MODEL (Ctrl-C to give up)" >&2
	sleep 0.2
done

trap 'stop 0' INT TERM
case "$HTTP_HOST" in
0.0.0.0|::|'') where="every interface, port ${url##*:}" ;;
*) where="$HTTP_HOST only (HTTP_HOST=0.0.0.0 to serve other machines)" ;;
esac
cat <<MSG

Ready: $name at $url.  Listening on $where.
Its store (for ./dyn rpc ls, ./dyn store ls, more workers):
  export DYN_STORE=$DYN_STORE
Try (Ctrl-C stops both):

  curl $url/v1/completions -H 'Content-Type: application/json' \\
    -d '{"model":"$name","prompt":"Once upon a time","max_tokens":100}'

MSG
if [ "$chat" = yes ]; then
	cat <<MSG
  curl $url/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"$name","messages":[{"role":"user","content":"Once upon a time"}],"stream":true}'

MSG
else
	echo "  ($name has no chat template: /v1/chat/completions answers 400)"
	echo
fi
# Ctrl-C reaches the whole process group, so the children see it at the
# same moment as this shell, whose trap (stop 0) then runs before the next
# command: a child found dead here stopped on its own.
until died; do
	sleep 0.5
done
if [ "$st" -eq 0 ]; then
	echo "make run: the $who stopped" >&2
else
	echo "make run: the $who exited with status $st" >&2
fi
stop 1
