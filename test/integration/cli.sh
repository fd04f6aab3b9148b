#!/bin/sh
# cli.sh - the dyn executable as a user meets it: help, version, unknown
# commands and options, busybox-style links, exit statuses, man pages.
set -u
. "$(dirname "$0")/lib.sh"

one_line() { [ "$(printf '%s\n' "$1" | wc -l)" -eq 1 ]; }

out=$("$DYN_BIN" help); rc=$?
check "help lists commands" '[ $rc -eq 0 ] && contains "$out" "store" && contains "$out" "version"'
out=$("$DYN_BIN"); rc=$?
check "no args shows help and exits 1 (as git)" '[ $rc -eq 1 ] && contains "$out" "usage: dyn"'

out=$("$DYN_BIN" --version); rc=$?
check "--version" '[ $rc -eq 0 ] && contains "$out" "dyn 0." && contains "$out" "commit"'
out=$("$DYN_BIN" version); rc=$?
check "version names runtimes" '[ $rc -eq 0 ] && contains "$out" "CUDA driver:" &&
	contains "$out" "cuBLAS:" && contains "$out" "NCCL:" && contains "$out" "UCX:" &&
	contains "$out" "cpu:" && contains "$out" "kv-xfer:   tcp"'
"$DYN_BIN" version --json >"$TMP/v.json"
check "version --json is JSON" '"$PYTHON" -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d[\"runtimes\"][\"CUDA driver\"][\"found\"] in (True, False)
assert d[\"cpu\"][\"threads\"] >= 1
assert d[\"kv_transfer\"][\"ucx\"] in (True, False)
assert d[\"kv_transfer\"][\"detail\"].startswith(\"ucx \")
assert d[\"commit\"]" "$TMP/v.json"'

# The commit shown is the one built (the checkout's HEAD), not a stale one.
if head=$(git -C "$(dirname "$DYN_BIN")" rev-parse --short=12 HEAD 2>/dev/null) &&
	[ "$DYN_BIN" -nt "$(git -C "$(dirname "$DYN_BIN")" rev-parse --git-dir)/index" ]; then
	check "version shows the commit built" \
		'"$DYN_BIN" --version | head -1 | grep -q "(commit $head)"'
fi

err=$("$DYN_BIN" stroe 2>&1); rc=$?
check "unknown command: exit 2, one line, suggestion" \
	'[ $rc -eq 2 ] && contains "$err" "did you mean '\''store'\''" && one_line "$err"'
err=$("$DYN_BIN" version --jsno 2>&1); rc=$?
check "unknown option: exit 2, one line, suggestion" \
	'[ $rc -eq 2 ] && contains "$err" "did you mean '\''--json'\''" && one_line "$err"'
"$DYN_BIN" --frobnicate >/dev/null 2>&1; rc=$?
check "unknown global option: exit 2" '[ $rc -eq 2 ]'
err=$("$DYN_BIN" --verison 2>&1); rc=$?
check "mistyped global option: exit 2, suggestion" \
	'[ $rc -eq 2 ] && contains "$err" "did you mean '\''--version'\''" && one_line "$err"'
"$DYN_BIN" version extra >/dev/null 2>&1; rc=$?
check "unexpected argument: exit 2" '[ $rc -eq 2 ]'

out=$("$DYN_BIN" version --help); rc=$?
check "CMD --help" '[ $rc -eq 0 ] && contains "$out" "usage: dyn version" && contains "$out" "--[no-]json"'
out=$("$DYN_BIN" help version); rc=$?
check "help CMD" '[ $rc -eq 0 ] && contains "$out" "usage: dyn version"'
err=$("$DYN_BIN" help verison 2>&1); rc=$?
check "help with typo" '[ $rc -eq 2 ] && contains "$err" "did you mean '\''version'\''"'

# Every command in the table answers --help, and its man page documents
# the same options; so do the verbs of commands made of verbs.
man_documents() {	# label, --help text, man page
	missing=
	for o in $(printf '%s\n' "$2" | sed -n 's/^  \(--[^ ]*\).*/\1/p' | sed 's/\[no-\]//' | sort -u); do
		[ "$o" = --help ] && continue
		name=${o#--}
		# roff escapes dashes (\-); mdoc writes --name as "Fl -name".
		sed 's/\\-/-/g' "$3" | grep -q -e "Fl -\\(no-\\)\\?$name\\>" -e "--$name\\>" ||
			missing="$missing $o"
	done
	check "man page of $1 documents every option of its --help${missing:+ (missing:$missing)}" '[ -z "$missing" ]'
}
for cmd in $("$DYN_BIN" help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
	out=$("$DYN_BIN" "$cmd" --help 2>&1); rc=$?
	check "$cmd --help exits 0" '[ $rc -eq 0 ]'
	[ "$cmd" = help ] && continue
	page="$TOP/man/dyn-$cmd.1"
	if [ ! -f "$page" ]; then fail "man page for $cmd" "$page missing"; continue; fi
	man_documents "$cmd" "$out" "$page"
	# Verbs listed as "  VERB  summary" under "Verbs:" have their own --help.
	for verb in $(printf '%s\n' "$out" | sed -n '/^Verbs:/,/^$/s/^  \([a-z]*\) .*/\1/p'); do
		vout=$("$DYN_BIN" "$cmd" "$verb" --help 2>&1); rc=$?
		check "$cmd $verb --help exits 0" '[ $rc -eq 0 ]'
		man_documents "$cmd $verb" "$vout" "$page"
	done
done

# Busybox-style: a link named dyn-CMD runs CMD.
ln -sf "$DYN_BIN" "$TMP/dyn-version"
out=$("$TMP/dyn-version"); rc=$?
check "dyn-version link" '[ $rc -eq 0 ] && contains "$out" "dyn 0."'
ln -sf "$DYN_BIN" "$TMP/dyn-nonsense"
"$TMP/dyn-nonsense" >/dev/null 2>&1; rc=$?
check "dyn-unknown link exits 2" '[ $rc -eq 2 ]'

# Options fall back to DYN_* environment variables, validated the same way.
err=$(DYN_JSON=maybe "$DYN_BIN" version 2>&1); rc=$?
check "bad env value: exit 2 naming the variable" '[ $rc -eq 2 ] && contains "$err" "DYN_JSON"'
out=$(DYN_JSON=1 "$DYN_BIN" version)
check "env fallback" 'contains "$out" "\"version\""'

# make install puts the binary, the links and the man pages under PREFIX.
if [ "${SAN:-0}" != 1 ]; then
	make -s -C "$TOP" install PREFIX="$TMP/prefix" >"$TMP/install.log" 2>&1
	check "make install" '[ -x "$TMP/prefix/bin/dyn" ] && [ -L "$TMP/prefix/bin/dyn-version" ] &&
		[ -f "$TMP/prefix/share/man/man1/dyn.1" ] && [ -f "$TMP/prefix/share/man/man5/dyn-store.5" ] &&
		[ -f "$TMP/prefix/share/man/man7/dyn-kv-transfer.7" ]'
fi

# Man pages are clean.
if command -v mandoc >/dev/null 2>&1; then
	# All levels, style included.  mandoc looks up cross-references (Xr)
	# among the system's installed pages only, so a reference to a page of
	# ours (not installed here) is a false alarm when man/ has that page.
	# (-Tlint -Wwarning, as 'make lint-man' runs, leaves out style notes.)
	# Findings go to stdout; stderr has only notes on the system's
	# database, which, interleaved, could split a finding's line.
	lint=$(mandoc -Tlint "$TOP"/man/*.[1-8] 2>/dev/null | while IFS= read -r line; do
		ref=$(printf '%s\n' "$line" | sed -n 's/.*STYLE: referenced manual not found: Xr \([a-z0-9-]*\) \([1-8]\).*/\1.\2/p')
		[ -n "$ref" ] && [ -f "$TOP/man/$ref" ] && continue
		case $line in *"$TOP/man/"*) printf '%s\n' "$line" ;; esac
	done)
	check "mandoc -Tlint is clean on every man page" '[ -z "$lint" ] || { echo "$lint" | head -5 >&2; false; }'
else
	fail "mandoc -Tlint" "mandoc not installed (run make deps)"
fi
finish
