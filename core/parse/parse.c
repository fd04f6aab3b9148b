/*
 * parse.c - the streaming parser (parse.h): the reasoning stage, then the
 * tool-call stage (formats in toolfmt.c), or the harmony channels.
 *
 * Each stage keeps the text it has not decided yet in a buffer and, after
 * every piece, decides as much of it as it can: text that cannot be (the
 * start of) a marker goes on at once, the rest waits.  Decisions depend
 * only on the text up to where they are made, so feeding the output in
 * any pieces decides it the same way.
 */
#include "core/parse/internal.h"

#include "core/strbuf.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rstate { R_PRE, R_IN, R_OUT };
enum hstate { H_TEXT, H_HEAD, H_BODY };

struct parser {
	const struct tool_fmt *fmt;	/* NULL: no calls are parsed */
	cJSON *tools;
	enum parse_reasoning rsn;
	int harmony, harmony_calls;
	/* the reasoning stage (or harmony): text not decided yet */
	enum rstate rstate;
	int in_reasoning;
	struct strbuf rbuf;
	/* the tool-call stage */
	struct strbuf tbuf;
	int content_seen;		/* content other than whitespace went out */
	int after_call;			/* whitespace after a call is not content */
	/* harmony: where the channels stand, the message's kind and callee */
	enum hstate hstate;
	enum parse_ev_kind hkind;
	char *hcallee;
	struct parse_evs calls;		/* a scan's calls, until it decides */
};

/* ---- names ------------------------------------------------------------- */

static const char *const tool_names[PARSE_TOOL_N] = {
	"none", "hermes", "mistral", "llama3_json", "pythonic", "deepseek_v3", "deepseek_v31",
	"phi4", "qwen3_coder", "kimi_k2", "glm45", "gpt_oss",
};
static const char *const rsn_names[PARSE_RSN_N] = {
	"none", "deepseek_r1", "qwen3", "granite", "gpt_oss",
};

static int by_name(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}

int parse_tool_by_name(const char *name)
{
	if (!strcmp(name, "glm4.5") || !strcmp(name, "glm4_moe"))
		return PARSE_TOOL_GLM45;
	if (!strcmp(name, "openai"))
		return PARSE_TOOL_GPT_OSS;
	if (!strcmp(name, "deepseek_v3.1"))
		return PARSE_TOOL_DEEPSEEK_V31;
	return by_name(tool_names, PARSE_TOOL_N, name);
}

int parse_reasoning_by_name(const char *name)
{
	if (!strcmp(name, "openai"))
		return PARSE_RSN_GPT_OSS;
	return by_name(rsn_names, PARSE_RSN_N, name);
}

const char *parse_tool_name(enum parse_tool t)
{
	return tool_names[t];
}

const char *parse_reasoning_name(enum parse_reasoning r)
{
	return rsn_names[r];
}

/* names[1..n) joined by spaces into buf (once). */
static const char *joined(const char *const *names, int n, char *buf, size_t size)
{
	if (!buf[0]) {
		size_t at = 0;
		for (int i = 1; i < n; i++)
			at += (size_t)snprintf(buf + at, size - at, "%s%s", i > 1 ? " " : "", names[i]);
	}
	return buf;
}

const char *parse_tool_names(void)
{
	static char buf[256];
	return joined(tool_names, PARSE_TOOL_N, buf, sizeof(buf));
}

const char *parse_reasoning_names(void)
{
	static char buf[128];
	return joined(rsn_names, PARSE_RSN_N, buf, sizeof(buf));
}

static const char *const h_marks[] = { "<|start|>", "<|channel|>", "<|message|>", "<|end|>",
					"<|call|>", "<|return|>", "<|constrain|>", NULL };
static const char *const think_marks[] = { "<think>", "</think>", NULL };

static int in_marks(const char *const *marks, const char *s, size_t n)
{
	for (size_t k = 0; marks && marks[k]; k++)
		if (n && memmem(marks[k], strlen(marks[k]), s, n))
			return 1;
	return 0;
}

int parse_keeps_special(enum parse_tool tool, enum parse_reasoning rsn, const char *s, size_t n)
{
	if (tool == PARSE_TOOL_GPT_OSS || rsn == PARSE_RSN_GPT_OSS)
		return in_marks(h_marks, s, n);
	return in_marks(tool_fmts[tool] ? tool_fmts[tool]->marks : NULL, s, n) ||
	       (rsn != PARSE_RSN_NONE && in_marks(think_marks, s, n));
}

/* ---- detection from the template's renderings --------------------------- */

enum parse_tool parse_tool_detect(const char *r)
{
	/* most specific first: several formats share <tool_call> */
	static const struct { const char *mark; enum parse_tool t; } marks[] = {
		{ "to=functions." PARSE_PROBE_NAME, PARSE_TOOL_GPT_OSS },
		{ "<|tool_calls_section_begin|>", PARSE_TOOL_KIMI_K2 },
		{ "call\xe2\x96\x81" "begin\xef\xbd\x9c>function<\xef\xbd\x9ctool\xe2\x96\x81sep",
		  PARSE_TOOL_DEEPSEEK_V3 },
		{ "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>",
		  PARSE_TOOL_DEEPSEEK_V31 },
		{ "<function=" PARSE_PROBE_NAME ">", PARSE_TOOL_QWEN3_CODER },
		{ "<arg_key>" PARSE_PROBE_ARG "</arg_key>", PARSE_TOOL_GLM45 },
		{ "<tool_call>", PARSE_TOOL_HERMES },
		{ "[TOOL_CALLS]", PARSE_TOOL_MISTRAL },
		{ "functools[", PARSE_TOOL_PHI4 },
		{ "<|python_tag|>", PARSE_TOOL_LLAMA3_JSON },
		{ "\"parameters\": {\"" PARSE_PROBE_ARG "\"", PARSE_TOOL_LLAMA3_JSON },
		{ "[" PARSE_PROBE_NAME "(" PARSE_PROBE_ARG "=", PARSE_TOOL_PYTHONIC },
	};
	for (size_t i = 0; r && i < sizeof(marks) / sizeof(marks[0]); i++)
		if (strstr(r, marks[i].mark))
			return marks[i].t;
	return PARSE_TOOL_NONE;
}

enum parse_reasoning parse_reasoning_detect(const char *r)
{
	if (!r)
		return PARSE_RSN_NONE;
	if (strstr(r, "<|channel|>"))
		return PARSE_RSN_GPT_OSS;
	/* a template that writes <think> itself (the generation prompt opens
	 * it, or closes an empty one when thinking is off); Granite 3.3 too */
	if (strstr(r, "<think>"))
		return PARSE_RSN_QWEN3;
	if (strstr(r, "Here is my thought process"))	/* Granite 3.2 */
		return PARSE_RSN_GRANITE;
	return PARSE_RSN_NONE;
}

int parse_prompt_opens_reasoning(enum parse_reasoning r, const char *prompt, size_t len)
{
	if (r == PARSE_RSN_DEEPSEEK_R1)
		return 1;	/* R1 reasons first; its template may open <think> or not */
	if (r != PARSE_RSN_QWEN3)
		return 0;
	/* the last <think> after the last </think> */
	long open = -1, close = -1, at = 0;
	while ((at = find(prompt, len, (size_t)at, "<think>")) >= 0)
		open = at++;
	at = 0;
	while ((at = find(prompt, len, (size_t)at, "</think>")) >= 0)
		close = at++;
	return open >= 0 && open > close;
}

/* ---- helpers ----------------------------------------------------------- */

int is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && is_ws(s[i]))
		i++;
	return i;
}

long find(const char *s, size_t n, size_t from, const char *needle)
{
	size_t m = strlen(needle);
	for (size_t i = from; i + m <= n; i++)
		if (s[i] == needle[0] && !memcmp(s + i, needle, m))
			return (long)i;
	return -1;
}

int starts_with(const char *s, size_t n, const char *p)
{
	size_t m = strlen(p);
	return n >= m && !memcmp(s, p, m);
}

int prefix_of(const char *s, size_t n, const char *p)
{
	return n < strlen(p) && !memcmp(s, p, n);
}

size_t held_tail(const char *s, size_t n, const char *const *marks)
{
	size_t best = 0;
	for (size_t k = 0; marks[k]; k++) {
		size_t m = strlen(marks[k]);
		for (size_t t = m - 1 < n ? m - 1 : n; t > best; t--)
			if (!memcmp(s + n - t, marks[k], t)) {
				best = t;
				break;
			}
	}
	return best;
}

void parse_evs_reset(struct parse_evs *e)
{
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].text);
		free(e->v[i].name);
		free(e->v[i].id);
	}
	e->n = 0;
}

void parse_evs_release(struct parse_evs *e)
{
	parse_evs_reset(e);
	free(e->v);
	e->v = NULL;
	e->cap = 0;
}

static struct parse_ev *ev_push(struct parse_evs *e)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 8;
		e->v = xrealloc(e->v, e->cap * sizeof(*e->v));
	}
	struct parse_ev *v = &e->v[e->n++];
	memset(v, 0, sizeof(*v));
	return v;
}

void ev_text(struct parse_evs *e, enum parse_ev_kind kind, const char *s, size_t n)
{
	if (!n)
		return;
	struct parse_ev *v = e->n ? &e->v[e->n - 1] : NULL;
	if (!v || v->kind != kind) {
		v = ev_push(e);
		v->kind = kind;
	}
	v->text = xrealloc(v->text, v->len + n + 1);
	memcpy(v->text + v->len, s, n);
	v->len += n;
	v->text[v->len] = 0;
}

void ev_call(struct parse_evs *e, const char *name, size_t nlen, const char *args,
	     const char *id)
{
	struct parse_ev *v = ev_push(e);
	v->kind = PARSE_CALL;
	v->name = xstrndup(name, nlen);
	v->text = xstrdup(args);
	v->len = strlen(args);
	v->id = id ? xstrdup(id) : NULL;
}

int name_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 0;
	return n > 0;
}

void ev_move(struct parse_evs *to, struct parse_evs *from)
{
	for (size_t i = 0; i < from->n; i++)
		*ev_push(to) = from->v[i];
	from->n = 0;
}

enum scan_rc json_end(const char *s, size_t n, size_t i, size_t *end)
{
	i = skip_ws(s, n, i);
	if (i == n)
		return SCAN_NEED;
	if (s[i] != '{' && s[i] != '[')
		return SCAN_BAD;
	int depth = 0, str = 0;
	for (; i < n; i++) {
		char c = s[i];
		if (str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				str = 0;
		} else if (c == '"') {
			str = 1;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0) {
				*end = i + 1;
				return SCAN_OK;
			}
		}
	}
	return SCAN_NEED;
}

cJSON *json_parse(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
	if (v && skip_ws(s, n, (size_t)(end - s)) != n) {
		cJSON_Delete(v);
		v = NULL;
	}
	return v;
}

char *args_text(const cJSON *args)
{
	if (!args)
		return xstrdup("{}");
	if (cJSON_IsString(args))	/* already a JSON text (as some models write it) */
		return xstrdup(args->valuestring);
	char *p = cJSON_PrintUnformatted(args);
	char *r = xstrdup(p);
	cJSON_free(p);
	return r;
}

int json_call(const cJSON *obj, struct parse_evs *calls)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
	if (!cJSON_IsObject(obj) || !cJSON_IsString(name) ||
	    !name_ok(name->valuestring, strlen(name->valuestring)))
		return -1;
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(obj, "arguments");
	if (!args)
		args = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
	if (args && !cJSON_IsObject(args) && !cJSON_IsString(args))
		return -1;
	char *a = args_text(args);
	ev_call(calls, name->valuestring, strlen(name->valuestring), a, NULL);
	free(a);
	return 0;
}

/* ---- the parser -------------------------------------------------------- */

struct parser *parser_new(enum parse_tool tool, const char *tools_json, enum parse_reasoning rsn,
			  int in_reasoning)
{
	struct parser *p = xcalloc(1, sizeof(*p));
	p->harmony = tool == PARSE_TOOL_GPT_OSS || rsn == PARSE_RSN_GPT_OSS;
	p->harmony_calls = tool == PARSE_TOOL_GPT_OSS;
	p->fmt = p->harmony ? NULL : tool_fmts[tool];
	p->tools = tools_json ? cJSON_Parse(tools_json) : NULL;
	p->rsn = p->harmony ? PARSE_RSN_NONE : rsn;
	p->rstate = p->rsn == PARSE_RSN_NONE ? R_OUT : R_PRE;
	p->in_reasoning = in_reasoning;
	sb_init(&p->rbuf, 0);
	sb_init(&p->tbuf, 0);
	return p;
}

void parser_free(struct parser *p)
{
	if (!p)
		return;
	cJSON_Delete(p->tools);
	sb_release(&p->rbuf);
	sb_release(&p->tbuf);
	free(p->hcallee);
	parse_evs_release(&p->calls);
	free(p);
}

/* Content out of the tool stage. */
static void content(struct parser *p, const char *s, size_t n, struct parse_evs *out)
{
	if (skip_ws(s, n, 0) < n)
		p->content_seen = 1;
	ev_text(out, PARSE_CONTENT, s, n);
}

/* The tool-call stage over p->tbuf. */
static void tool_run(struct parser *p, int final, struct parse_evs *out)
{
	const struct tool_fmt *fmt = p->fmt;
	struct strbuf *b = &p->tbuf;

	while (b->len) {
		const char *s = b->buf;
		size_t n = b->len;
		if (!fmt) {
			content(p, s, n, out);
			sb_reset(b);
			return;
		}
		if (p->after_call) {
			size_t i = 0;
			while (i < n && (is_ws(s[i]) || (s[i] == ';' && fmt->bare == '{')))
				i++;
			sb_remove(b, 0, i);
			if (i == n)
				return;
			p->after_call = 0;
			continue;
		}
		long pos = -1;
		for (size_t k = 0; fmt->starts[k]; k++) {
			long q = find(s, n, 0, fmt->starts[k]);
			if (q >= 0 && (pos < 0 || q < pos))
				pos = q;
		}
		if (fmt->bare && !p->content_seen) {
			size_t i = skip_ws(s, n, 0);
			if (i == n && !final)
				return;	/* only whitespace yet: a call may follow */
			if (i < n && s[i] == fmt->bare && (pos < 0 || (long)i < pos))
				pos = (long)i;
		}
		if (pos < 0) {
			size_t keep = 0;
			if (!final) {	/* a marker's start, and the whitespace before it */
				keep = held_tail(s, n, fmt->starts);
				while (keep < n && is_ws(s[n - keep - 1]))
					keep++;
			}
			content(p, s, n - keep, out);
			sb_remove(b, 0, n - keep);
			return;
		}
		/* whitespace before a call is not content, unless it is not one */
		size_t ws = (size_t)pos;
		while (ws && is_ws(s[ws - 1]))
			ws--;
		content(p, s, ws, out);
		sb_remove(b, 0, ws);
		s = b->buf;
		n = b->len;
		pos -= (long)ws;
		size_t used = 0;
		enum scan_rc rc = fmt->scan(p->tools, s + pos, n - (size_t)pos, final, &used,
					    &p->calls);
		if (rc == SCAN_NEED) {
			parse_evs_reset(&p->calls);	/* scanned again with more text */
			return;
		}
		if (rc == SCAN_OK) {
			ev_move(out, &p->calls);
			p->after_call = 1;
			p->content_seen |= fmt->bare != '{';	/* llama3: calls may follow calls */
		} else {
			parse_evs_reset(&p->calls);
			content(p, s, (size_t)pos + used, out);
			p->content_seen = 1;
		}
		sb_remove(b, 0, (size_t)pos + used);
	}
}

/* ---- harmony (gpt-oss) ---------------------------------------------------- */

static const char *const h_starts[] = { "<|start|>", "<|channel|>", NULL };
static const char *const h_ends[] = { "<|end|>", "<|call|>", "<|return|>", NULL };

/* A header's word after key (up to whitespace or a marker), or NULL. */
static char *header_word(const char *s, size_t n, const char *key)
{
	long at = find(s, n, 0, key);
	if (at < 0)
		return NULL;
	size_t i = (size_t)at + strlen(key), j = i;
	while (j < n && !is_ws(s[j]) && s[j] != '<')
		j++;
	return xstrndup(s + i, j - i);
}

static void harmony_run(struct parser *p, int final, struct parse_evs *out)
{
	struct strbuf *b = &p->rbuf;
	for (;;) {
		const char *s = b->buf;
		size_t n = b->len;
		long pos = -1;
		size_t keep, mlen = 0;
		switch (p->hstate) {
		case H_TEXT:
			for (size_t k = 0; h_starts[k]; k++) {
				long q = find(s, n, 0, h_starts[k]);
				if (q >= 0 && (pos < 0 || q < pos))
					pos = q;
			}
			keep = pos >= 0 ? n - (size_t)pos : final ? 0 : held_tail(s, n, h_starts);
			ev_text(out, PARSE_CONTENT, s, n - keep);
			sb_remove(b, 0, n - keep);
			if (pos < 0)
				return;
			p->hstate = H_HEAD;
			break;
		case H_HEAD: {
			pos = find(s, n, 0, "<|message|>");
			if (pos < 0) {
				if (final) {	/* a header that never ended */
					ev_text(out, PARSE_CONTENT, s, n);
					sb_reset(b);
				}
				return;
			}
			char *ch = header_word(s, (size_t)pos, "<|channel|>");
			char *to = header_word(s, (size_t)pos, "to=");
			free(p->hcallee);
			p->hcallee = NULL;
			const char *name = !to ? NULL
					   : starts_with(to, strlen(to), "functions.") ? to + 10 : to;
			if (name && name_ok(name, strlen(name)) && p->harmony_calls) {
				p->hcallee = xstrdup(name);
				p->hkind = PARSE_CALL;
			} else {
				p->hkind = ch && !strcmp(ch, "analysis") ? PARSE_REASONING
									 : PARSE_CONTENT;
			}
			free(ch);
			free(to);
			sb_remove(b, 0, (size_t)pos + strlen("<|message|>"));
			p->hstate = H_BODY;
			break;
		}
		case H_BODY:
			for (size_t k = 0; h_ends[k]; k++) {
				long q = find(s, n, 0, h_ends[k]);
				if (q >= 0 && (pos < 0 || q < pos)) {
					pos = q;
					mlen = strlen(h_ends[k]);
				}
			}
			if (p->hkind == PARSE_CALL) {
				if (pos < 0 && !final)
					return;	/* a call goes out whole */
				size_t end = pos < 0 ? n : (size_t)pos;
				cJSON *args = json_parse(s, end);
				if (args && cJSON_IsObject(args)) {
					char *a = args_text(args);
					ev_call(out, p->hcallee, strlen(p->hcallee), a, NULL);
					free(a);
				} else {
					ev_text(out, PARSE_CONTENT, s, end);
				}
				cJSON_Delete(args);
				sb_remove(b, 0, end + mlen);
				p->hstate = H_TEXT;
				break;
			}
			if (pos < 0) {
				keep = final ? 0 : held_tail(s, n, h_ends);
				ev_text(out, p->hkind, s, n - keep);
				sb_remove(b, 0, n - keep);
				return;
			}
			ev_text(out, p->hkind, s, (size_t)pos);
			sb_remove(b, 0, (size_t)pos + mlen);
			p->hstate = H_TEXT;
			break;
		}
	}
}

/* ---- reasoning ------------------------------------------------------------- */

static const char *const think_starts[] = { "<think>", NULL };
static const char *const think_ends[] = { "</think>", NULL };
static const char *const granite_starts[] = { "Here is my thought process:",
					      "Here's my thought process:", NULL };
static const char *const granite_ends[] = { "Here is my response:", "Here's my response:",
					    NULL };

static void run(struct parser *p, int final, struct parse_evs *out)
{
	if (p->harmony) {
		harmony_run(p, final, out);
		return;
	}
	int granite = p->rsn == PARSE_RSN_GRANITE;
	const char *const *starts = granite ? granite_starts : think_starts;
	const char *const *ends = granite ? granite_ends : think_ends;
	struct strbuf *b = &p->rbuf;
	for (;;) {
		const char *s = b->buf;
		size_t n = b->len, i, keep;
		long pos = -1;
		size_t mlen = 0;
		switch (p->rstate) {
		case R_PRE:
			i = skip_ws(s, n, 0);
			for (size_t k = 0; starts[k]; k++) {
				if (starts_with(s + i, n - i, starts[k])) {
					sb_remove(b, 0, i + strlen(starts[k]));
					p->rstate = R_IN;
					break;
				}
				if (!final && prefix_of(s + i, n - i, starts[k]))
					return;
			}
			if (p->rstate == R_PRE)
				p->rstate = p->in_reasoning ? R_IN : R_OUT;
			break;
		case R_IN:
			for (size_t k = 0; ends[k]; k++) {
				long q = find(s, n, 0, ends[k]);
				if (q >= 0 && (pos < 0 || q < pos)) {
					pos = q;
					mlen = strlen(ends[k]);
				}
			}
			if (pos < 0) {
				keep = final ? 0 : held_tail(s, n, ends);
				ev_text(out, PARSE_REASONING, s, n - keep);
				sb_remove(b, 0, n - keep);
				return;
			}
			ev_text(out, PARSE_REASONING, s, (size_t)pos);
			sb_remove(b, 0, (size_t)pos + mlen);
			p->rstate = R_OUT;
			break;
		case R_OUT:
			sb_add(&p->tbuf, s, n);
			sb_reset(b);
			tool_run(p, final, out);
			return;
		}
	}
}

void parser_feed(struct parser *p, const char *s, size_t n, struct parse_evs *out)
{
	sb_add(&p->rbuf, s, n);
	run(p, 0, out);
}

void parser_finish(struct parser *p, struct parse_evs *out)
{
	run(p, 1, out);
}
