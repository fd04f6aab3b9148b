/*
 * fuzz_tmpl_json.c - libFuzzer target for the other input of the
 * chat-template engine (core/tmpl): JSON request data (messages, tools,
 * kwargs) read into template variables.  Run with `make fuzz`; seeds in
 * fuzz_tmpl_json.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks:
 *  - reading never crashes: a value, or an error with a message;
 *  - the value survives a round trip: tojson of it, read back, gives the
 *    same tojson text (json.dumps(json.loads(s)) is a fixed point);
 *  - printing and iterating it (str(), for loops, |length, |items) stay
 *    within the render limits.
 */
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_tmpl_json: invariant broken: %s\n", what);
		abort();
	}
}

static struct tmpl *to_json, *walk;

static const char WALK[] =
	"{{ x }}|{{ x|string|length }}|{% if x is mapping %}{% for k, v in x|items %}{{ k }}={{ v }};"
	"{% endfor %}{% elif x is iterable %}{% for v in x %}{{ loop.index }}:{{ v }}{% endfor %}"
	"{{ x|length }}{% else %}{{ x|string }}{% endif %}";

static int render(const struct tmpl *t, const struct tmpl_vars *v, struct strbuf *out)
{
	struct tmpl_render_opts o = {
		.limits = { .max_steps = 100000, .max_output = 1 << 20, .max_memory = 32 << 20 },
	};
	int rc = tmpl_render(t, v, &o, out);
	if (rc < 0)
		check(err_msg()[0] != '\0', "render error without a message");
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!to_json) {
		check(tmpl_compile("{{ x|tojson }}", 14, "tojson", &to_json) == 0, "compile tojson");
		check(tmpl_compile(WALK, strlen(WALK), "walk", &walk) == 0, "compile walk");
	}
	struct tmpl_vars *v = tmpl_vars_new();
	err_clear();
	if (tmpl_vars_set_json(v, "x", (const char *)data, size) < 0) {
		check(err_msg()[0] != '\0', "JSON error without a message");
		tmpl_vars_free(v);
		return 0;
	}
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT, w = STRBUF_INIT;
	if (render(to_json, v, &a) == 0) {
		struct tmpl_vars *v2 = tmpl_vars_new();
		check(tmpl_vars_set_json(v2, "x", a.buf, a.len) == 0, "tojson output does not read back");
		check(render(to_json, v2, &b) == 0, "second tojson failed");
		check(a.len == b.len && !memcmp(a.buf, b.buf, a.len), "tojson round trip changed the text");
		tmpl_vars_free(v2);
	}
	render(walk, v, &w);
	sb_release(&a);
	sb_release(&b);
	sb_release(&w);
	tmpl_vars_free(v);
	return 0;
}
