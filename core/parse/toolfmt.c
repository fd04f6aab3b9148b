/*
 * toolfmt.c - the tool-call formats (internal.h struct tool_fmt): each
 * scans the text from its start marker and says whether it is a whole
 * call (or several), not a call, or not decided yet.  The formats, as the
 * models' chat templates write them:
 *
 *   hermes       <tool_call>{"name": N, "arguments": {..}}</tool_call>
 *   mistral      [TOOL_CALLS][{"name": N, "arguments": {..}}, ..]  or
 *                [TOOL_CALLS]N[ARGS]{..}  (also N[CALL_ID]id[ARGS]{..})
 *   llama3_json  <|python_tag|>{"name": N, "parameters": {..}}, or the
 *                same object bare at the start; several joined by ';'
 *   pythonic     [f(a=1, b="x"), g()]  (Llama 4: inside <|python_start|>
 *                .. <|python_end|>)
 *   deepseek_v3  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
 *                ```json {..} ```<｜tool▁call▁end｜>..<｜tool▁calls▁end｜>
 *   deepseek_v31 the same with N<｜tool▁sep｜>{..} in each call
 *   phi4         functools[{"name": N, "arguments": {..}}, ..]
 *   qwen3_coder  <tool_call><function=N><parameter=P>V</parameter>..
 *                </function></tool_call>
 *   kimi_k2      <|tool_calls_section_begin|><|tool_call_begin|>functions.N:I
 *                <|tool_call_argument_begin|>{..}<|tool_call_end|>..
 *                <|tool_calls_section_end|>
 *   glm45        <tool_call>N<arg_key>P</arg_key><arg_value>V</arg_value>..
 *                </tool_call>
 * The XML-style values (qwen3_coder, glm45) are typed by the tool's
 * parameter schema: strings stay text, numbers, booleans, objects and
 * arrays are read as JSON (a value that is not falls back to text).
 */
#include "core/parse/internal.h"

#include "core/strbuf.h"
#include "core/tok/utf8.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Not decided: wait, or at the end of the output, not a call. */
static enum scan_rc need(int final, size_t *used, size_t marker)
{
	if (!final)
		return SCAN_NEED;
	*used = marker;
	return SCAN_BAD;
}

static enum scan_rc bad(size_t *used, size_t marker)
{
	*used = marker ? marker : 1;
	return SCAN_BAD;
}

/* The JSON value at s[i..n) as calls: one call object, or (list) a list
 * of them.  *end: past it. */
static enum scan_rc json_calls(const char *s, size_t n, size_t i, int final, int list,
			       size_t marker, size_t *used, struct parse_evs *calls)
{
	size_t end;
	enum scan_rc rc = json_end(s, n, i, &end);
	if (rc == SCAN_NEED)
		return need(final, used, marker);
	if (rc == SCAN_BAD)
		return bad(used, marker);
	cJSON *v = json_parse(s + i, end - i);
	int ok = v != NULL;
	if (ok && cJSON_IsArray(v) && list) {
		const cJSON *c;
		ok = cJSON_GetArraySize(v) > 0;
		cJSON_ArrayForEach(c, v)
			ok = ok && !json_call(c, calls);
	} else if (ok) {
		ok = !json_call(v, calls);
	}
	cJSON_Delete(v);
	if (!ok)
		return bad(used, marker);
	*used = end;
	return SCAN_OK;
}

/* The arguments object s[0..n) as a call named name[0..nlen). */
static int args_call(const char *name, size_t nlen, const char *s, size_t n, const char *id,
		     struct parse_evs *calls)
{
	size_t a = skip_ws(s, n, 0);
	while (n > a && is_ws(s[n - 1]))
		n--;
	cJSON *v = json_parse(s + a, n - a);
	int ok = v && cJSON_IsObject(v) && name_ok(name, nlen);
	if (ok) {
		char *t = args_text(v);
		ev_call(calls, name, nlen, t, id);
		free(t);
	}
	cJSON_Delete(v);
	return ok ? 0 : -1;
}

/* s[*i..n) with whitespace trimmed off both ends: [*i, return). */
static size_t trim(const char *s, size_t *i, size_t n)
{
	*i = skip_ws(s, n, *i);
	while (n > *i && is_ws(s[n - 1]))
		n--;
	return n;
}

/* ---- hermes ---------------------------------------------------------------- */

#define TOOL_CALL "<tool_call>"
#define TOOL_CALL_END "</tool_call>"
static const char *const tool_call_starts[] = { TOOL_CALL, NULL };

static enum scan_rc scan_hermes(const cJSON *tools, const char *s, size_t n, int final,
				size_t *used, struct parse_evs *calls)
{
	size_t m = strlen(TOOL_CALL);
	long end = find(s, n, m, TOOL_CALL_END);
	(void)tools;
	if (end < 0)
		return need(final, used, m);
	cJSON *v = json_parse(s + m, (size_t)end - m);
	int ok = v && !json_call(v, calls);
	cJSON_Delete(v);
	if (!ok)
		return bad(used, m);
	*used = (size_t)end + strlen(TOOL_CALL_END);
	return SCAN_OK;
}

/* ---- mistral --------------------------------------------------------------- */

static const char *const mistral_starts[] = { "[TOOL_CALLS]", NULL };

static int ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

static enum scan_rc scan_mistral(const cJSON *tools, const char *s, size_t n, int final,
				 size_t *used, struct parse_evs *calls)
{
	size_t m = strlen("[TOOL_CALLS]"), i = skip_ws(s, n, m), j, end;
	(void)tools;
	if (i == n)
		return need(final, used, m);
	if (s[i] == '[' || s[i] == '{')
		return json_calls(s, n, i, final, 1, m, used, calls);
	for (j = i; j < n && ident_char(s[j]); j++)
		;
	size_t name_end = j;
	char *id = NULL;
	if (j == n || prefix_of(s + j, n - j, "[CALL_ID]") || prefix_of(s + j, n - j, "[ARGS]"))
		return need(final, used, m);
	if (starts_with(s + j, n - j, "[CALL_ID]")) {
		long a = find(s, n, j, "[ARGS]");
		if (a < 0)
			return need(final, used, m);
		j += strlen("[CALL_ID]");
		id = xstrndup(s + j, (size_t)a - j);
		j = (size_t)a;
	}
	if (!starts_with(s + j, n - j, "[ARGS]") || name_end == i) {
		free(id);
		return bad(used, m);
	}
	j += strlen("[ARGS]");
	enum scan_rc rc = json_end(s, n, j, &end);
	if (rc == SCAN_OK && args_call(s + i, name_end - i, s + j, end - j, id, calls) < 0)
		rc = SCAN_BAD;
	free(id);
	if (rc == SCAN_NEED)
		return need(final, used, m);
	if (rc == SCAN_BAD)
		return bad(used, m);
	*used = end;
	return SCAN_OK;
}

/* ---- llama3_json, phi4 ----------------------------------------------------- */

#define PYTHON_TAG "<|python_tag|>"
static const char *const llama3_starts[] = { PYTHON_TAG, NULL };

static enum scan_rc scan_llama3(const cJSON *tools, const char *s, size_t n, int final,
				size_t *used, struct parse_evs *calls)
{
	size_t m = starts_with(s, n, PYTHON_TAG) ? strlen(PYTHON_TAG) : 0;
	(void)tools;
	return json_calls(s, n, m, final, 0, m, used, calls);
}

static const char *const phi4_starts[] = { "functools", NULL };

static enum scan_rc scan_phi4(const cJSON *tools, const char *s, size_t n, int final,
			      size_t *used, struct parse_evs *calls)
{
	size_t m = strlen("functools"), i = skip_ws(s, n, m);
	(void)tools;
	if (i == n)
		return need(final, used, m);
	if (s[i] != '[')
		return bad(used, m);
	return json_calls(s, n, i, final, 1, m, used, calls);
}

/* ---- pythonic -------------------------------------------------------------- */

#define PY_START "<|python_start|>"
#define PY_END "<|python_end|>"
static const char *const pythonic_starts[] = { PY_START, NULL };

/* A Python literal reader: q->rc is SCAN_NEED when the text ran out,
 * SCAN_BAD on a syntax error. */
struct py {
	const char *s;
	size_t n, i;
	enum scan_rc rc;
};

static int py_more(struct py *q)
{
	q->i = skip_ws(q->s, q->n, q->i);
	if (q->i < q->n)
		return 1;
	q->rc = SCAN_NEED;
	return 0;
}

static int py_fail(struct py *q)
{
	q->rc = SCAN_BAD;
	return 0;
}

static cJSON *py_value(struct py *q, int depth);

/* The code point of the hex digits s[0..n), or -1. */
static long hex_cp(const char *s, size_t n)
{
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v <= 0x10ffff ? v : -1;
}

/* A quoted string ('..' or ".."), its escapes read as Python does
 * (a backslash and n, t, r, xHH, uHHHH or UHHHHHHHH; before any other
 * character, that character). */
static cJSON *py_string(struct py *q)
{
	char quote = q->s[q->i++];
	struct strbuf b = STRBUF_INIT;
	while (q->i < q->n && q->s[q->i] != quote) {
		char c = q->s[q->i++];
		if (c == '\\') {
			if (q->i >= q->n)
				break;
			c = q->s[q->i++];
			size_t hex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
			if (hex) {
				if (q->i + hex > q->n) {
					q->i = q->n;	/* not complete yet */
					break;
				}
				long cp = hex_cp(q->s + q->i, hex);
				char u[4];
				if (cp < 0) {
					q->rc = SCAN_BAD;
					sb_release(&b);
					return NULL;
				}
				sb_add(&b, u, tok_utf8_encode((uint32_t)cp, u));
				q->i += hex;
				continue;
			}
			c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
		}
		sb_addch(&b, c);
	}
	cJSON *v = NULL;
	if (q->i >= q->n)
		q->rc = SCAN_NEED;
	else
		v = cJSON_CreateString(b.buf);
	q->i++;
	sb_release(&b);
	return v;
}

/* Items of a list, tuple or dict up to close. */
static cJSON *py_items(struct py *q, char close, int dict, int depth)
{
	cJSON *v = dict ? cJSON_CreateObject() : cJSON_CreateArray();
	q->i++;
	for (;;) {
		if (!py_more(q))
			break;
		if (q->s[q->i] == close) {
			q->i++;
			return v;
		}
		char *key = NULL;
		if (dict) {
			if (q->s[q->i] != '"' && q->s[q->i] != '\'') {
				py_fail(q);
				break;
			}
			cJSON *k = py_string(q);
			if (!k)
				break;
			key = xstrdup(k->valuestring);
			cJSON_Delete(k);
			if (!py_more(q) || (q->s[q->i] != ':' && !py_fail(q))) {
				free(key);
				break;
			}
			q->i++;
		}
		cJSON *item = py_value(q, depth + 1);
		if (!item) {
			free(key);
			break;
		}
		if (dict)
			cJSON_AddItemToObject(v, key, item);
		else
			cJSON_AddItemToArray(v, item);
		free(key);
		if (!py_more(q))
			break;
		if (q->s[q->i] == ',')
			q->i++;
		else if (q->s[q->i] != close && !py_fail(q))
			break;
	}
	cJSON_Delete(v);
	return NULL;
}

static cJSON *py_value(struct py *q, int depth)
{
	if (depth > 64 || !py_more(q))
		return depth > 64 ? (py_fail(q), NULL) : NULL;
	const char *s = q->s + q->i;
	size_t left = q->n - q->i;
	char c = *s;
	if (c == '"' || c == '\'')
		return py_string(q);
	if (c == '[')
		return py_items(q, ']', 0, depth);
	if (c == '(')
		return py_items(q, ')', 0, depth);
	if (c == '{')
		return py_items(q, '}', 1, depth);
	static const struct { const char *w; int type; } words[] = {
		{ "True", cJSON_True }, { "False", cJSON_False }, { "None", cJSON_NULL },
	};
	size_t j = 0;
	while (j < left && ident_char(s[j]) && s[j] != '.' && s[j] != '-')
		j++;
	for (size_t k = 0; k < 3; k++)
		if (j == strlen(words[k].w) && !memcmp(s, words[k].w, j)) {
			if (j == left) {	/* "True" might go on */
				q->rc = SCAN_NEED;
				return NULL;
			}
			q->i += j;
			return words[k].type == cJSON_True    ? cJSON_CreateTrue()
			       : words[k].type == cJSON_False ? cJSON_CreateFalse()
							      : cJSON_CreateNull();
		}
	if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') {
		j = 0;
		while (j < left && strchr("0123456789+-.eE", s[j]))
			j++;
		if (j == left) {
			q->rc = SCAN_NEED;
			return NULL;
		}
		char *num = xstrndup(s, j), *endp;
		double d = strtod(num, &endp);
		int whole = *endp == 0;
		free(num);
		if (!whole) {
			py_fail(q);
			return NULL;
		}
		q->i += j;
		return cJSON_CreateNumber(d);
	}
	if (j == left && j) {
		q->rc = SCAN_NEED;	/* a word not complete yet */
		return NULL;
	}
	py_fail(q);
	return NULL;
}

/* One call f(k=v, ..) at q->i, appended to calls. */
static int py_call(struct py *q, const cJSON *tools, struct parse_evs *calls)
{
	(void)tools;
	if (!py_more(q))
		return 0;
	size_t a = q->i;
	while (q->i < q->n && ident_char(q->s[q->i]) && q->s[q->i] != '-')
		q->i++;
	size_t b = q->i;
	if (!py_more(q))
		return 0;
	if (a == b || q->s[q->i] != '(')
		return py_fail(q);
	q->i++;
	cJSON *args = cJSON_CreateObject();
	for (;;) {
		if (!py_more(q))
			break;
		if (q->s[q->i] == ')') {
			q->i++;
			char *t = args_text(args);
			ev_call(calls, q->s + a, b - a, t, NULL);
			free(t);
			cJSON_Delete(args);
			return 1;
		}
		size_t k = q->i;
		while (q->i < q->n && ident_char(q->s[q->i]) && q->s[q->i] != '-' &&
		       q->s[q->i] != '.')
			q->i++;
		size_t ke = q->i;
		if (!py_more(q))
			break;
		if (k == ke || q->s[q->i] != '=') {
			py_fail(q);
			break;
		}
		q->i++;
		cJSON *v = py_value(q, 0);
		if (!v)
			break;
		char *key = xstrndup(q->s + k, ke - k);
		cJSON_AddItemToObject(args, key, v);
		free(key);
		if (!py_more(q))
			break;
		if (q->s[q->i] == ',')
			q->i++;
		else if (q->s[q->i] != ')') {
			py_fail(q);
			break;
		}
	}
	cJSON_Delete(args);
	return 0;
}

static enum scan_rc scan_pythonic(const cJSON *tools, const char *s, size_t n, int final,
				  size_t *used, struct parse_evs *calls)
{
	size_t m = starts_with(s, n, PY_START) ? strlen(PY_START) : 0;
	struct py q = { s, n, m, SCAN_OK };
	if (!py_more(&q))
		return need(final, used, m);
	if (s[q.i] != '[')
		return bad(used, m);
	q.i++;
	for (;;) {
		if (!py_call(&q, tools, calls))
			break;
		if (!py_more(&q))
			break;
		if (s[q.i] == ']') {
			q.i++;
			if (m) {	/* Llama 4 closes the block */
				size_t e = skip_ws(s, n, q.i);
				if (prefix_of(s + e, n - e, PY_END) && !final)
					return SCAN_NEED;
				if (starts_with(s + e, n - e, PY_END))
					q.i = e + strlen(PY_END);
			}
			*used = q.i;
			return SCAN_OK;
		}
		if (s[q.i] != ',') {
			q.rc = SCAN_BAD;
			break;
		}
		q.i++;
	}
	parse_evs_reset(calls);
	if (q.rc == SCAN_NEED)
		return need(final, used, m);
	return bad(used, m);
}

/* ---- deepseek_v3, deepseek_v31 ---------------------------------------------- */

#define DS_BAR "\xef\xbd\x9c"	/* U+FF5C ｜ */
#define DS_SP "\xe2\x96\x81"	/* U+2581 ▁ */
#define DS_CALLS_BEGIN "<" DS_BAR "tool" DS_SP "calls" DS_SP "begin" DS_BAR ">"
#define DS_CALLS_END "<" DS_BAR "tool" DS_SP "calls" DS_SP "end" DS_BAR ">"
#define DS_CALL_BEGIN "<" DS_BAR "tool" DS_SP "call" DS_SP "begin" DS_BAR ">"
#define DS_CALL_END "<" DS_BAR "tool" DS_SP "call" DS_SP "end" DS_BAR ">"
#define DS_SEP "<" DS_BAR "tool" DS_SP "sep" DS_BAR ">"
static const char *const deepseek_starts[] = { DS_CALLS_BEGIN, NULL };

/* One call s[0..n) between DS_CALL_BEGIN and DS_CALL_END: v3's
 * "function<sep>NAME\n```json\n{..}\n```" or v3.1's "NAME<sep>{..}". */
static int deepseek_call(const char *s, size_t n, struct parse_evs *calls)
{
	long sep = find(s, n, 0, DS_SEP);
	if (sep < 0)
		return -1;
	size_t a = 0, e = trim(s, &a, (size_t)sep), r = (size_t)sep + strlen(DS_SEP);
	if (e - a == 8 && !memcmp(s + a, "function", 8)) {
		long nl = find(s, n, r, "\n");
		long open = find(s, n, r, "```json");
		if (nl < 0 || open < 0)
			return -1;
		size_t na = r, ne = trim(s, &na, (size_t)nl);
		size_t body = (size_t)open + strlen("```json");
		long close = find(s, n, body, "```");
		if (close < 0)
			return -1;
		return args_call(s + na, ne - na, s + body, (size_t)close - body, NULL, calls);
	}
	return args_call(s + a, e - a, s + r, n - r, NULL, calls);
}

static enum scan_rc scan_deepseek(const cJSON *tools, const char *s, size_t n, int final,
				  size_t *used, struct parse_evs *calls)
{
	size_t m = strlen(DS_CALLS_BEGIN), i = m;
	long end = find(s, n, m, DS_CALLS_END);
	(void)tools;
	if (end < 0)
		return need(final, used, m);
	for (;;) {
		i = skip_ws(s, (size_t)end, i);
		if (i == (size_t)end)
			break;
		long ce = find(s, (size_t)end, i, DS_CALL_END);
		if (!starts_with(s + i, (size_t)end - i, DS_CALL_BEGIN) || ce < 0)
			return bad(used, m);
		i += strlen(DS_CALL_BEGIN);
		if (deepseek_call(s + i, (size_t)ce - i, calls) < 0)
			return bad(used, m);
		i = (size_t)ce + strlen(DS_CALL_END);
	}
	if (!calls->n)
		return bad(used, m);
	*used = (size_t)end + strlen(DS_CALLS_END);
	return SCAN_OK;
}

/* ---- kimi_k2 --------------------------------------------------------------- */

#define KIMI_BEGIN "<|tool_calls_section_begin|>"
#define KIMI_END "<|tool_calls_section_end|>"
#define KIMI_CALL "<|tool_call_begin|>"
#define KIMI_ARGS "<|tool_call_argument_begin|>"
#define KIMI_CALL_END "<|tool_call_end|>"
static const char *const kimi_starts[] = { KIMI_BEGIN, NULL };

static enum scan_rc scan_kimi(const cJSON *tools, const char *s, size_t n, int final,
			      size_t *used, struct parse_evs *calls)
{
	size_t m = strlen(KIMI_BEGIN), i = m;
	long end = find(s, n, m, KIMI_END);
	(void)tools;
	if (end < 0)
		return need(final, used, m);
	size_t e = (size_t)end;
	for (;;) {
		i = skip_ws(s, e, i);
		if (i == e)
			break;
		long args = find(s, e, i, KIMI_ARGS), ce = find(s, e, i, KIMI_CALL_END);
		if (!starts_with(s + i, e - i, KIMI_CALL) || args < 0 || ce < args)
			return bad(used, m);
		size_t a = i + strlen(KIMI_CALL), ie = trim(s, &a, (size_t)args);
		char *id = xstrndup(s + a, ie - a);
		/* "functions.NAME:INDEX" */
		const char *name = starts_with(id, strlen(id), "functions.") ? id + 10 : id;
		char *colon = strrchr(name, ':');
		size_t nlen = colon ? (size_t)(colon - name) : strlen(name);
		size_t b = (size_t)args + strlen(KIMI_ARGS);
		int rc = args_call(name, nlen, s + b, (size_t)ce - b, id, calls);
		free(id);
		if (rc < 0)
			return bad(used, m);
		i = (size_t)ce + strlen(KIMI_CALL_END);
	}
	if (!calls->n)
		return bad(used, m);
	*used = e + strlen(KIMI_END);
	return SCAN_OK;
}

/* ---- qwen3_coder, glm45 ----------------------------------------------------- */

/* The schema type of parameter pname of function fname (NULL: unknown;
 * the first of a list of types). */
static const char *param_type(const cJSON *tools, const char *fname, const char *pname)
{
	const cJSON *t;
	cJSON_ArrayForEach(t, tools) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsString(name) || strcmp(name->valuestring, fname))
			continue;
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
		const cJSON *props = cJSON_GetObjectItemCaseSensitive(params, "properties");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(props, pname);
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
		if (cJSON_IsArray(type))
			type = type->child;
		return cJSON_IsString(type) ? type->valuestring : NULL;
	}
	return NULL;
}

/* Value text s[0..n) of parameter pname typed by the schema: text for
 * strings, JSON for the other types; without a schema JSON when it reads
 * as JSON (as the templates write non-strings), else text. */
static cJSON *typed_value(const cJSON *tools, const char *fname, const char *pname,
			  const char *s, size_t n)
{
	const char *type = param_type(tools, fname, pname);
	if (!type || strcmp(type, "string")) {
		cJSON *v = json_parse(s, n);
		if (v && (type || !cJSON_IsString(v)))
			return v;
		cJSON_Delete(v);
	}
	char *t = xstrndup(s, n);
	cJSON *v = cJSON_CreateString(t);
	free(t);
	return v;
}

/* A value between its tags: one newline each side is the format's. */
static void value_span(const char *s, size_t *a, size_t *e)
{
	if (*a < *e && s[*a] == '\n')
		(*a)++;
	if (*e > *a && s[*e - 1] == '\n')
		(*e)--;
}

static int add_call(const char *name, cJSON *args, struct parse_evs *calls)
{
	char *t = args_text(args);
	ev_call(calls, name, strlen(name), t, NULL);
	free(t);
	cJSON_Delete(args);
	return 0;
}

/* <function=N><parameter=P>V</parameter>..</function> in s[0..n). */
static int coder_call(const cJSON *tools, const char *s, size_t n, struct parse_evs *calls)
{
	long f = find(s, n, 0, "<function=");
	if (f < 0)
		return -1;
	size_t a = (size_t)f + strlen("<function=");
	long gt = find(s, n, a, ">"), fe = find(s, n, a, "</function>");
	if (gt < 0 || fe < 0 || fe < gt)
		return -1;
	size_t na = a, ne = trim(s, &na, (size_t)gt);
	char *name = xstrndup(s + na, ne - na);
	cJSON *args = cJSON_CreateObject();
	size_t i = (size_t)gt + 1;
	long p;
	int rc = 0;
	while ((p = find(s, (size_t)fe, i, "<parameter=")) >= 0) {
		size_t pa = (size_t)p + strlen("<parameter=");
		long pgt = find(s, (size_t)fe, pa, ">");
		if (pgt < 0) {
			rc = -1;
			break;
		}
		size_t va = (size_t)pgt + 1;
		/* the value ends at its close tag, or (left out) the next one */
		long ve = find(s, (size_t)fe, va, "</parameter>");
		long next = find(s, (size_t)fe, va, "<parameter=");
		size_t e = ve >= 0 && (next < 0 || ve < next) ? (size_t)ve
			 : next >= 0 ? (size_t)next : (size_t)fe;
		i = ve >= 0 && (size_t)ve == e ? e + strlen("</parameter>") : e;
		size_t ka = pa, ke = trim(s, &ka, (size_t)pgt);
		char *key = xstrndup(s + ka, ke - ka);
		value_span(s, &va, &e);
		cJSON_AddItemToObject(args, key, typed_value(tools, name, key, s + va, e - va));
		free(key);
	}
	if (!rc && !name_ok(s + na, ne - na))
		rc = -1;
	if (!rc)
		add_call(name, args, calls);
	else
		cJSON_Delete(args);
	free(name);
	return rc;
}

/* NAME<arg_key>P</arg_key><arg_value>V</arg_value>.. in s[0..n). */
static int glm_call(const cJSON *tools, const char *s, size_t n, struct parse_evs *calls)
{
	long k = find(s, n, 0, "<arg_key>");
	size_t na = 0, ne = trim(s, &na, k < 0 ? n : (size_t)k);
	if (!name_ok(s + na, ne - na) || memchr(s + na, '{', ne - na))
		return -1;
	char *name = xstrndup(s + na, ne - na);
	cJSON *args = cJSON_CreateObject();
	int rc = 0;
	while (k >= 0) {
		size_t ka = (size_t)k + strlen("<arg_key>");
		long ke = find(s, n, ka, "</arg_key>");
		long va = ke < 0 ? -1 : find(s, n, (size_t)ke, "<arg_value>");
		long ve = va < 0 ? -1 : find(s, n, (size_t)va, "</arg_value>");
		if (ve < 0 || skip_ws(s, (size_t)va, (size_t)ke + strlen("</arg_key>")) !=
				      (size_t)va) {
			rc = -1;
			break;
		}
		char *key = xstrndup(s + ka, (size_t)ke - ka);
		size_t a = (size_t)va + strlen("<arg_value>"), e = (size_t)ve;
		value_span(s, &a, &e);
		cJSON_AddItemToObject(args, key, typed_value(tools, name, key, s + a, e - a));
		free(key);
		size_t next = skip_ws(s, n, (size_t)ve + strlen("</arg_value>"));
		k = find(s, n, next, "<arg_key>");
		if (k >= 0 && (size_t)k != next)
			rc = -1;
		if (k < 0 && next != n)
			rc = -1;
	}
	if (!rc)
		add_call(name, args, calls);
	else
		cJSON_Delete(args);
	free(name);
	return rc;
}

static enum scan_rc scan_xml(const cJSON *tools, const char *s, size_t n, int final,
			     size_t *used, struct parse_evs *calls,
			     int (*call)(const cJSON *, const char *, size_t, struct parse_evs *))
{
	size_t m = strlen(TOOL_CALL);
	long end = find(s, n, m, TOOL_CALL_END);
	if (end < 0)
		return need(final, used, m);
	if (call(tools, s + m, (size_t)end - m, calls) < 0)
		return bad(used, m);
	*used = (size_t)end + strlen(TOOL_CALL_END);
	return SCAN_OK;
}

static enum scan_rc scan_coder(const cJSON *tools, const char *s, size_t n, int final,
			       size_t *used, struct parse_evs *calls)
{
	return scan_xml(tools, s, n, final, used, calls, coder_call);
}

static enum scan_rc scan_glm(const cJSON *tools, const char *s, size_t n, int final,
			     size_t *used, struct parse_evs *calls)
{
	return scan_xml(tools, s, n, final, used, calls, glm_call);
}

/* ---- the table --------------------------------------------------------------- */

static const char *const hermes_marks[] = { TOOL_CALL, TOOL_CALL_END, NULL };
static const char *const mistral_marks[] = { "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", NULL };
static const char *const pythonic_marks[] = { PY_START, PY_END, NULL };
static const char *const deepseek_marks[] = { DS_CALLS_BEGIN, DS_CALLS_END, DS_CALL_BEGIN,
					      DS_CALL_END, DS_SEP, NULL };
static const char *const kimi_marks[] = { KIMI_BEGIN, KIMI_END, KIMI_CALL, KIMI_ARGS,
					  KIMI_CALL_END, NULL };
static const char *const glm_marks[] = { TOOL_CALL, TOOL_CALL_END, "<arg_key>", "</arg_key>",
					 "<arg_value>", "</arg_value>", NULL };

static const struct tool_fmt hermes = { tool_call_starts, 0, hermes_marks, scan_hermes };
static const struct tool_fmt mistral = { mistral_starts, 0, mistral_marks, scan_mistral };
static const struct tool_fmt llama3 = { llama3_starts, '{', llama3_starts, scan_llama3 };
static const struct tool_fmt pythonic = { pythonic_starts, '[', pythonic_marks, scan_pythonic };
static const struct tool_fmt deepseek = { deepseek_starts, 0, deepseek_marks, scan_deepseek };
static const struct tool_fmt phi4 = { phi4_starts, 0, NULL, scan_phi4 };
static const struct tool_fmt coder = { tool_call_starts, 0, hermes_marks, scan_coder };
static const struct tool_fmt kimi = { kimi_starts, 0, kimi_marks, scan_kimi };
static const struct tool_fmt glm = { tool_call_starts, 0, glm_marks, scan_glm };

const struct tool_fmt *const tool_fmts[PARSE_TOOL_N] = {
	[PARSE_TOOL_HERMES] = &hermes,	     [PARSE_TOOL_MISTRAL] = &mistral,
	[PARSE_TOOL_LLAMA3_JSON] = &llama3,  [PARSE_TOOL_PYTHONIC] = &pythonic,
	[PARSE_TOOL_DEEPSEEK_V3] = &deepseek, [PARSE_TOOL_DEEPSEEK_V31] = &deepseek,
	[PARSE_TOOL_PHI4] = &phi4,	     [PARSE_TOOL_QWEN3_CODER] = &coder,
	[PARSE_TOOL_KIMI_K2] = &kimi,	     [PARSE_TOOL_GLM45] = &glm,
};
