/*
 * fuzz_tmpl.c - libFuzzer target for the chat-template engine (core/tmpl):
 * the lexer and parser above all, and the interpreter behind them.  Run
 * with `make fuzz`; seeds in fuzz_tmpl.seed/.
 *
 * The input is template source.  Checked for every input, besides the
 * sanitizers' memory checks:
 *  - compiling never crashes and either yields a template or an error
 *    message, never both and never neither;
 *  - a compiled template renders, with tight limits on steps, output and
 *    memory, against a small chat-like set of variables, to text or to an
 *    error with a message; output never exceeds the output limit;
 *  - rendering is deterministic: a second render gives the same result.
 *
 * test/unit/test_tmpl.c includes this file and replays the seeds through
 * LLVMFuzzerTestOneInput() in `make test`, with FUZZ_TMPL_BROKEN(what)
 * defined to fail the test instead of aborting.
 */
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_TMPL_BROKEN
#define FUZZ_TMPL_BROKEN(what)                                                  \
	do {                                                                    \
		fprintf(stderr, "fuzz_tmpl: invariant broken: %s\n", what);     \
		abort();                                                        \
	} while (0)
#endif

static void check(int ok, const char *what)
{
	if (!ok)
		FUZZ_TMPL_BROKEN(what);
}

static struct tmpl_vars *vars;

static const char VARS[] =
	"{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
	" {\"role\": \"user\", \"content\": \"Hi \\u00e9 <b>\"},"
	" {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"call12345\","
	" \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5, \"b\": [1, null]}}}]},"
	" {\"role\": \"tool\", \"content\": \"42\"}],"
	" \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\":"
	" {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}}}}}],"
	" \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
	" \"n\": 3, \"f\": 2.5, \"s\": \"text\", \"none\": null}";

static int render_once(const struct tmpl *t, struct strbuf *out)
{
	struct tmpl_render_opts o = {
		.limits = { .max_steps = 20000, .max_output = 1 << 16, .max_memory = 8 << 20,
			    .max_call_depth = 50 },
	};
	int rc = tmpl_render(t, vars, &o, out);
	if (rc < 0)
		check(err_msg()[0] != '\0', "render error without a message");
	else
		check(out->len <= (1 << 16), "output over the limit");
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vars) {
		vars = tmpl_vars_new();
		check(tmpl_vars_merge_json(vars, VARS, strlen(VARS)) == 0, "fixture variables");
	}
	struct tmpl *t = NULL;
	err_clear();
	int rc = tmpl_compile((const char *)data, size, "fuzz", &t);
	if (rc < 0) {
		check(t == NULL, "error but a template");
		check(err_msg()[0] != '\0', "compile error without a message");
		return 0;
	}
	check(t != NULL, "success but no template");
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	int ra = render_once(t, &a);
	int rb = render_once(t, &b);
	check(ra == rb, "two renders disagree on success");
	/* strftime_now() reads the clock; output differs across a second edge */
	if (ra == 0 && !memmem(data, size, "strftime_now", 12))
		check(a.len == b.len && !memcmp(a.buf, b.buf, a.len), "two renders differ");
	sb_release(&a);
	sb_release(&b);
	tmpl_free(t);
	return 0;
}
