/*
 * template.c - "dyn template": render a model's chat template for a
 * conversation, exactly as the model will be fed it (core/tmpl).
 *
 * One conversation from files (--messages, --tools, --documents, --kwargs)
 * prints the prompt byte for byte with no newline added; --batch renders
 * many requests (one JSON object per line) in one process and prints one
 * JSON result per line, which is how the conformance tests drive it.
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_MAX_BYTES (256u << 20)

static const char *t_template, *t_messages, *t_tools, *t_documents, *t_kwargs, *t_revision;
static const char *t_name, *t_batch, *t_now;
static int t_generation_prompt = 1, t_continue;
static long t_max_steps, t_max_output, t_max_memory, t_max_time;

static const struct opt template_opts[] = {
	{ "template", OPT_STRING, &t_template, "FILE",
	  "render this Jinja2 file instead of the model's template (MODEL optional)", 0, 0, NULL },
	{ "messages", OPT_STRING, &t_messages, "FILE",
	  "the conversation: a JSON array of messages ('-' for stdin)", 0, 0, NULL },
	{ "tools", OPT_STRING, &t_tools, "FILE", "tool definitions: a JSON array", 0, 0, NULL },
	{ "documents", OPT_STRING, &t_documents, "FILE", "documents: a JSON array", 0, 0, NULL },
	{ "kwargs", OPT_STRING, &t_kwargs, "JSON",
	  "extra template variables as a JSON object, e.g. '{\"enable_thinking\":false}'", 0, 0, NULL },
	{ "generation-prompt", OPT_BOOL, &t_generation_prompt, NULL,
	  "end with the assistant turn's opening (add_generation_prompt)", 0, 0, NULL },
	{ "continue-final-message", OPT_BOOL, &t_continue, NULL,
	  "leave the final (assistant) message open to be continued", 0, 0, NULL },
	{ "template-name", OPT_STRING, &t_name, "NAME",
	  "which of the model's named templates (default: tool_use with tools, else default)",
	  0, 0, NULL },
	{ "batch", OPT_STRING, &t_batch, "FILE",
	  "render each line of FILE (JSON request objects; '-' for stdin), print JSON results",
	  0, 0, NULL },
	{ "template-now", OPT_STRING, &t_now, "DATE",
	  "the time strftime_now() sees: YYYY-MM-DD[THH:MM[:SS]] (default: now)", 0, 0, NULL },
	{ "max-steps", OPT_INT, &t_max_steps, "N",
	  "evaluation step budget per render; work on long strings and lists costs a step "
	  "per 32 bytes (0: 20000000)", 0, 1e15, NULL },
	{ "max-time", OPT_INT, &t_max_time, "MS",
	  "wall-clock time one render may take, in milliseconds (0: 10000)", 0, 1e9, NULL },
	{ "max-output", OPT_INT, &t_max_output, "BYTES",
	  "largest prompt a render may produce (0: 64 MiB)", 0, 1e15, NULL },
	{ "max-memory", OPT_INT, &t_max_memory, "BYTES",
	  "memory a render may use (0: 256 MiB)", 0, 1e15, NULL },
	CMD_REVISION_OPT(t_revision),
	{ 0 },
};

static const struct opt_cmd template_cmd = {
	.name = "template",
	.usage = "[MODEL] [--template FILE] --messages FILE [--tools FILE] [OPTIONS]\n"
		 "       dyn template [MODEL] [--template FILE] --batch FILE",
	.summary = "Render a model's chat template for a conversation and print the prompt\n"
		   "exactly as the model will see it (no newline is added).",
	.details = "MODEL is a folder holding tokenizer_config.json (chat_template and the\n"
		   "special tokens bos_token, eos_token, ...) and/or chat_template.jinja, or\n"
		   "a Hugging Face hub id ORG/NAME (those files are fetched into the hub\n"
		   "cache, weights excepted).\n\n"
		   "The template runs as in Hugging Face transformers (sandboxed Jinja2 with\n"
		   "trim_blocks and lstrip_blocks).  With --batch, each input line is an object\n"
		   "{\"messages\": [...], \"tools\": [...], \"documents\": [...],\n"
		   "\"chat_template_kwargs\": {...}, \"add_generation_prompt\": true,\n"
		   "\"continue_final_message\": false, \"template_name\": \"...\"} and each\n"
		   "output line is {\"ok\": true, \"prompt\": \"...\"} or {\"ok\": false,\n"
		   "\"error\": \"...\"}.",
	.opts = template_opts,
};

static int read_input(const char *path, struct strbuf *sb)
{
	if (strcmp(path, "-"))
		return sb_read_file(sb, path, INPUT_MAX_BYTES);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		sb_add(sb, buf, n);
	if (ferror(stdin))
		return err_set(-EIO, "reading stdin failed");
	return 0;
}

static int load_chat(const char *model_dir, struct tmpl_chat **chat)
{
	struct strbuf cfg = STRBUF_INIT, jinja = STRBUF_INIT, path = STRBUF_INIT;
	int rc;
	if (!t_template)
		return tmpl_chat_load(model_dir, chat);
	rc = sb_read_file(&jinja, t_template, INPUT_MAX_BYTES);
	bool have_cfg = false;
	if (rc == 0 && model_dir) {
		sb_addf(&path, "%s/tokenizer_config.json", model_dir);
		rc = sb_read_file(&cfg, path.buf, INPUT_MAX_BYTES);
		if (rc == 0)
			have_cfg = true;
		else if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0)
		rc = tmpl_chat_from_config(have_cfg ? cfg.buf : NULL, cfg.len, jinja.buf, jinja.len,
					   t_template, chat);
	sb_release(&cfg);
	sb_release(&jinja);
	sb_release(&path);
	return rc;
}

static int run_batch(struct tmpl_chat *chat, const struct tmpl_render_opts *ro)
{
	FILE *in = strcmp(t_batch, "-") ? fopen(t_batch, "r") : stdin;
	if (!in)
		return cmd_fail("template", "%s: %s", t_batch, strerror(errno));
	struct strbuf prompt = STRBUF_INIT, res = STRBUF_INIT;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, in)) >= 0) {
		size_t len = (size_t)n;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		size_t k = 0;
		while (k < len && (line[k] == ' ' || line[k] == '\t'))
			k++;
		if (k == len)
			continue;
		sb_reset(&prompt);
		sb_reset(&res);
		if (tmpl_chat_render_request(chat, line, len, ro, &prompt) == 0) {
			sb_adds(&res, "{\"ok\": true, \"prompt\": ");
			sb_add_json_str(&res, prompt.buf, prompt.len);
		} else {
			sb_adds(&res, "{\"ok\": false, \"error\": ");
			sb_add_json_str(&res, err_msg(), strlen(err_msg()));
		}
		sb_adds(&res, "}\n");
		fwrite(res.buf, 1, res.len, stdout);
	}
	free(line);
	bool failed = ferror(in);
	if (in != stdin)
		fclose(in);
	sb_release(&prompt);
	sb_release(&res);
	if (fflush(stdout) || failed)
		return cmd_fail("template", "I/O error");
	return 0;
}

int cmd_template(int argc, char **argv)
{
	int nargs;
	int rc = cmd_options(&template_cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs > 1)
		return cmd_usage_error("template", "expected at most one MODEL (see --help)");
	if (!nargs && !t_template)
		return cmd_usage_error("template", "give a MODEL or --template FILE (see --help)");
	if (!t_batch && !t_messages)
		return cmd_usage_error("template", "--messages FILE is required (or --batch FILE)");

	struct tm now;
	struct tmpl_render_opts ro = { { 0 }, NULL };
	ro.limits.max_steps = (uint64_t)t_max_steps;
	ro.limits.max_output = (size_t)t_max_output;
	ro.limits.max_memory = (size_t)t_max_memory;
	ro.limits.max_time_ms = (uint64_t)t_max_time;
	if (t_now && *t_now) {
		if (tmpl_parse_now(t_now, &now) < 0)
			return cmd_usage_error("template", "--template-now: %s", err_msg());
		ro.now = &now;
	}

	char *model_dir = NULL;
	if ((rc = nargs ? cmd_model_files("template", argv[0], t_revision, &model_dir)
			: cmd_check_revision("template", NULL, t_revision)))
		return rc;
	struct tmpl_chat *chat;
	rc = load_chat(model_dir, &chat);
	free(model_dir);
	if (rc < 0)
		return cmd_fail("template", "%s", err_msg());
	if (t_batch) {
		rc = run_batch(chat, &ro);
		tmpl_chat_free(chat);
		return rc;
	}

	struct strbuf msgs = STRBUF_INIT, tools = STRBUF_INIT, docs = STRBUF_INIT, out = STRBUF_INIT;
	rc = read_input(t_messages, &msgs);
	if (rc == 0 && t_tools)
		rc = read_input(t_tools, &tools);
	if (rc == 0 && t_documents)
		rc = read_input(t_documents, &docs);
	if (rc == 0) {
		struct tmpl_chat_request req = {
			.messages_json = msgs.buf,
			.tools_json = t_tools ? tools.buf : NULL,
			.documents_json = t_documents ? docs.buf : NULL,
			.kwargs_json = t_kwargs,
			.add_generation_prompt = t_generation_prompt && !t_continue,
			.continue_final_message = t_continue,
			.template_name = t_name,
		};
		rc = tmpl_chat_render(chat, &req, &ro, &out);
	}
	if (rc == 0) {
		fwrite(out.buf, 1, out.len, stdout);
		if (fflush(stdout))
			rc = err_set(-EIO, "writing the prompt failed");
	}
	int status = rc < 0 ? cmd_fail("template", "%s", err_msg()) : 0;
	sb_release(&msgs);
	sb_release(&tools);
	sb_release(&docs);
	sb_release(&out);
	tmpl_chat_free(chat);
	return status;
}
