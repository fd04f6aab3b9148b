/*
 * request.c - OpenAI request bodies -> struct fe_params (see internal.h).
 *
 * Fields are checked for type and range; a wrong one is a 400 naming the
 * field.  Fields this server does not know are ignored; fields of the
 * OpenAI (or vLLM) API that it does not implement yet are refused with a
 * 400 naming them, rather than silently ignored.  Chat messages are
 * normalised for the template: content given as an array of text parts
 * becomes one string (parts joined with "\n").  The template also gets
 * tools, documents, add_generation_prompt, continue_final_message and
 * chat_template_kwargs (with tool_choice), as vLLM passes them.
 */
#include "core/frontend/internal.h"
#include "core/err.h"
#include "core/grammar/grammar.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bad_param;

static int bad(const char *param, const char *fmt, const char *what)
{
	bad_param = param;
	return err_set(-EINVAL, fmt, what);
}

static const cJSON *field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_bool(const cJSON *o, const char *name, int *out)
{
	const cJSON *v = field(o, name);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return bad(name, "'%s' must be a boolean", name);
	*out = cJSON_IsTrue(v);
	return 0;
}

static int get_number(const cJSON *o, const char *name, double lo, double hi, double *out)
{
	const cJSON *v = field(o, name);
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || isnan(v->valuedouble))
		return bad(name, "'%s' must be a number", name);
	if (v->valuedouble < lo || v->valuedouble > hi) {
		bad_param = name;
		return err_set(-EINVAL, "'%s' must be between %g and %g", name, lo, hi);
	}
	*out = v->valuedouble;
	return 0;
}

static int get_int(const cJSON *o, const char *name, double lo, double hi, long *out)
{
	const cJSON *v = field(o, name);
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
		return bad(name, "'%s' must be an integer", name);
	if (v->valuedouble < lo || v->valuedouble > hi) {
		bad_param = name;
		return err_set(-EINVAL, "'%s' must be between %.0f and %.0f", name, lo, hi);
	}
	*out = (long)v->valuedouble;
	return 0;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t len;
		unsigned min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2, min = 0x80, c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, min = 0x800, c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, min = 0x10000, c &= 0x07;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static int get_stop(const cJSON *o, struct fe_params *p)
{
	const cJSON *v = field(o, "stop");
	if (!v)
		return 0;
	if (cJSON_IsString(v)) {
		if (*v->valuestring)
			p->stops[p->nstops++] = xstrdup(v->valuestring);
		return 0;
	}
	if (!cJSON_IsArray(v))
		return bad("stop", "'%s' must be a string or an array of strings", "stop");
	if (cJSON_GetArraySize(v) > FE_MAX_STOPS) {
		bad_param = "stop";
		return err_set(-EINVAL, "'stop' may hold at most %d strings", FE_MAX_STOPS);
	}
	const cJSON *e;
	cJSON_ArrayForEach(e, v) {
		if (!cJSON_IsString(e))
			return bad("stop", "'%s' must be a string or an array of strings", "stop");
		if (*e->valuestring)
			p->stops[p->nstops++] = xstrdup(e->valuestring);
	}
	return 0;
}

/* logit_bias: {"token id": bias in [-100, 100], ..} (OpenAI's).  Its keys
 * are checked with the model's vocabulary, as prompt ids are (a key that is
 * not an id is kept in bias_error for then). */
static int get_logit_bias(const cJSON *o, struct fe_params *p)
{
	struct gen_sampling *s = &p->gen.s;
	const cJSON *v = field(o, "logit_bias"), *e;
	if (!v)
		return 0;
	if (!cJSON_IsObject(v))
		return bad("logit_bias", "'%s' must be an object of token ids to biases",
			   "logit_bias");
	size_t n = (size_t)cJSON_GetArraySize(v);
	if (n > GEN_MAX_BIAS) {
		bad_param = "logit_bias";
		return err_set(-EINVAL, "'logit_bias' may hold at most %d entries",
			       GEN_MAX_BIAS);
	}
	s->bias_ids = xcalloc(n ? n : 1, sizeof(int32_t));
	s->bias = xcalloc(n ? n : 1, sizeof(double));
	cJSON_ArrayForEach(e, v) {
		char *end;
		errno = 0;
		long id = strtol(e->string, &end, 10);
		bad_param = "logit_bias";
		if (!*e->string || *end || errno || id > INT32_MAX ||
		    !(e->string[0] >= '0' && e->string[0] <= '9')) {
			if (!p->bias_error[0])
				snprintf(p->bias_error, sizeof(p->bias_error),
					 "'logit_bias': '%.40s' is not a token id", e->string);
			id = -1;
		}
		if (!cJSON_IsNumber(e) || !(e->valuedouble >= -100 && e->valuedouble <= 100))
			return err_set(-EINVAL, "'logit_bias': the bias of token %ld must be a "
				       "number between -100 and 100", id);
		bad_param = NULL;
		s->bias_ids[s->n_bias] = (int32_t)id;
		s->bias[s->n_bias++] = e->valuedouble;
	}
	return 0;
}

static int get_ids(const cJSON *arr, const char *name, int32_t **out, size_t *n)
{
	size_t cnt = (size_t)cJSON_GetArraySize(arr), i = 0;
	if (!cnt)	/* OpenAI refuses an empty prompt list too */
		return bad(name, "'%s' must not be an empty array", name);
	*out = xmalloc(cnt * sizeof(int32_t));
	const cJSON *e;
	cJSON_ArrayForEach(e, arr) {
		if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX ||
		    e->valuedouble != floor(e->valuedouble))
			return bad(name, "'%s' must be a string, an array of strings or an "
				   "array of token ids", name);
		(*out)[i++] = (int32_t)e->valuedouble;
	}
	*n = cnt;
	return 0;
}

static int parse_prompt(const cJSON *o, struct fe_params *p)
{
	const cJSON *v = field(o, "prompt");
	if (!v)
		return bad("prompt", "'%s' is required", "prompt");
	if (cJSON_IsString(v)) {
		p->prompt_text = xstrdup(v->valuestring);
		return 0;
	}
	if (!cJSON_IsArray(v))
		return bad("prompt", "'%s' must be a string, an array of strings or an array of "
			   "token ids", "prompt");
	int n = cJSON_GetArraySize(v);
	const cJSON *first = cJSON_GetArrayItem(v, 0);
	if (n == 0 || cJSON_IsNumber(first)) {
		p->has_prompt_ids = 1;
		return get_ids(v, "prompt", &p->prompt_ids, &p->n_prompt_ids);
	}
	if (n > 1) {
		/* A batch: strings or token arrays, one choice each. */
		if (n > FE_MAX_PROMPTS) {
			bad_param = "prompt";
			return err_set(-EINVAL, "'prompt' may hold at most %d prompts", FE_MAX_PROMPTS);
		}
		p->prompts = xcalloc((size_t)n, sizeof(*p->prompts));
		const cJSON *e;
		cJSON_ArrayForEach(e, v) {
			struct fe_prompt *q = &p->prompts[p->nprompts++];
			if (cJSON_IsString(e)) {
				q->text = xstrdup(e->valuestring);
			} else if (cJSON_IsArray(e)) {
				q->is_ids = 1;
				if (get_ids(e, "prompt", &q->ids, &q->n_ids) < 0)
					return -EINVAL;
			} else {
				return bad("prompt", "'%s' must be a string, an array of strings or an "
					   "array of token ids", "prompt");
			}
		}
		return 0;
	}
	if (cJSON_IsString(first)) {
		p->prompt_text = xstrdup(first->valuestring);
		return 0;
	}
	if (cJSON_IsArray(first)) {
		p->has_prompt_ids = 1;
		return get_ids(first, "prompt", &p->prompt_ids, &p->n_prompt_ids);
	}
	return bad("prompt", "'%s' must be a string, an array of strings or an array of "
		   "token ids", "prompt");
}

/* An assistant message's tool calls as templates expect them (and vLLM
 * gives them): each function's "arguments", a JSON string in the OpenAI
 * API, becomes the object it encodes ({} when empty or absent); an empty
 * tool_calls list is dropped. */
static int tool_calls_for_template(cJSON *msg)
{
	cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
	if (!calls || cJSON_IsNull(calls))
		return 0;
	if (!cJSON_IsArray(calls))
		return bad("messages", "'%s': tool_calls must be an array", "messages");
	if (cJSON_GetArraySize(calls) == 0) {
		cJSON_DeleteItemFromObjectCaseSensitive(msg, "tool_calls");
		return 0;
	}
	cJSON *call;
	cJSON_ArrayForEach(call, calls) {
		cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
		if (!cJSON_IsObject(fn))
			return bad("messages", "'%s': each tool call needs a 'function' object",
				   "messages");
		cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
		if (args && !cJSON_IsNull(args) && !cJSON_IsString(args))
			continue;	/* already an object: kept as given */
		cJSON *parsed;
		if (args && cJSON_IsString(args) && *args->valuestring) {
			parsed = cJSON_Parse(args->valuestring);
			if (!parsed)
				return bad("messages", "'%s': a tool call's arguments are not "
					   "valid JSON", "messages");
		} else {
			parsed = cJSON_CreateObject();
		}
		if (args)
			cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
		else
			cJSON_AddItemToObject(fn, "arguments", parsed);
	}
	return 0;
}

/* Build the JSON object given to the chat template. */
static int parse_messages(const cJSON *o, struct fe_params *p)
{
	const cJSON *msgs = field(o, "messages");
	if (!msgs)
		return bad("messages", "'%s' is required", "messages");
	if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
		return bad("messages", "'%s' must be a non-empty array of messages", "messages");
	cJSON *t = cJSON_CreateObject(), *out = cJSON_AddArrayToObject(t, "messages");
	const cJSON *m;
	int rc = 0;
	cJSON_ArrayForEach(m, msgs) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
			rc = bad("messages", "each of '%s' must be an object with a string 'role'",
				 "messages");
			break;
		}
		cJSON *copy = cJSON_Duplicate(m, 1);
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
		if (cJSON_IsArray(content)) {
			struct strbuf text = STRBUF_INIT;
			const cJSON *part;
			int n = 0;
			cJSON_ArrayForEach(part, content) {
				const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
				const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
				if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") ||
				    !cJSON_IsString(tx)) {
					rc = bad("messages", "'%s': only text content parts "
						 "({\"type\":\"text\",\"text\":...}) are supported",
						 "messages");
					break;
				}
				if (n++)
					sb_addch(&text, '\n');
				sb_adds(&text, tx->valuestring);
			}
			cJSON_ReplaceItemInObjectCaseSensitive(copy, "content",
							       cJSON_CreateString(text.buf));
			sb_release(&text);
		} else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
			rc = bad("messages", "a message's content in '%s' must be a string or an "
				 "array of text parts", "messages");
		}
		if (!rc && !strcmp(role->valuestring, "assistant"))
			rc = tool_calls_for_template(copy);
		cJSON_AddItemToArray(out, copy);
		if (rc)
			break;
	}
	const cJSON *tools = field(o, "tools");
	if (!rc && tools) {
		if (!cJSON_IsArray(tools))
			rc = bad("tools", "'%s' must be an array", "tools");
		else
			cJSON_AddItemToObject(t, "tools", cJSON_Duplicate(tools, 1));
		if (!rc && cJSON_GetArraySize(tools))
			p->tools_json = cJSON_PrintUnformatted(tools);
	}
	const cJSON *docs = field(o, "documents");
	if (!rc && docs) {
		const cJSON *d;
		int objects = cJSON_IsArray(docs);
		if (objects)
			cJSON_ArrayForEach(d, docs)
				if (!cJSON_IsObject(d))
					objects = 0;
		if (!objects)
			rc = bad("documents", "'%s' must be an array of objects", "documents");
		else
			cJSON_AddItemToObject(t, "documents", cJSON_Duplicate(docs, 1));
	}
	/* add_generation_prompt defaults to true, as in vLLM, except that a
	 * request continuing its final message need not say false. */
	int cfm = 0, agp = -1;
	if (!rc) rc = get_bool(o, "continue_final_message", &cfm);
	if (!rc) rc = get_bool(o, "add_generation_prompt", &agp);
	if (!rc && cfm && agp == 1)
		rc = bad("continue_final_message", "'%s' and 'add_generation_prompt' cannot both "
			 "be true", "continue_final_message");
	if (!rc && (agp == 0 || cfm))
		cJSON_AddFalseToObject(t, "add_generation_prompt");
	if (!rc && cfm)
		cJSON_AddTrueToObject(t, "continue_final_message");
	const cJSON *tc = field(o, "tool_choice");
	if (!rc && tc && !cJSON_IsObject(tc) &&
	    !(cJSON_IsString(tc) && (!strcmp(tc->valuestring, "none") ||
				     !strcmp(tc->valuestring, "auto") ||
				     !strcmp(tc->valuestring, "required"))))
		rc = bad("tool_choice", "'%s' must be \"none\", \"auto\", \"required\" or an "
			 "object naming a function", "tool_choice");
	p->tool_choice_none = cJSON_IsString(tc) && !strcmp(tc->valuestring, "none");
	const cJSON *kw = field(o, "chat_template_kwargs");
	if (!rc && kw && !cJSON_IsObject(kw))
		rc = bad("chat_template_kwargs", "'%s' must be an object", "chat_template_kwargs");
	if (!rc && (kw || tc)) {
		/* The template sees the kwargs as variables, and tool_choice as one
		 * more (unless the kwargs set it themselves). */
		cJSON *vars = kw ? cJSON_Duplicate(kw, 1) : cJSON_CreateObject();
		if (tc && !cJSON_GetObjectItemCaseSensitive(vars, "tool_choice"))
			cJSON_AddItemToObject(vars, "tool_choice", cJSON_Duplicate(tc, 1));
		cJSON_AddItemToObject(t, "chat_template_kwargs", vars);
	}
	if (!rc)
		p->template_json = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	return rc;
}

/* OpenAI (and vLLM) fields this server does not implement yet.  Ignoring
 * them would answer something else than what was asked (LangChain's
 * structured output then fails far from the cause), so they are refused,
 * unless given as their no-op value. */
static int refuse_unimplemented(const cJSON *o, int stream)
{
	static const char *const never[] = {
		"suffix", "functions", "function_call", "prediction", "audio",
	};
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		if (field(o, never[i]))
			return bad(never[i], "'%s' is not supported by this server yet", never[i]);
	const cJSON *v = field(o, "best_of");
	if (v && !(cJSON_IsNumber(v) && v->valuedouble == 1))
		return bad("best_of", "'%s': only 1 is supported", "best_of");
	v = field(o, "modalities");
	if (v && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 &&
		   cJSON_IsString(v->child) && !strcmp(v->child->valuestring, "text")))
		return bad("modalities", "'%s': only [\"text\"] is supported", "modalities");
	if (field(o, "stream_options") && !stream)	/* as OpenAI answers */
		return bad("stream_options", "'%s' is only allowed when 'stream' is true",
			   "stream_options");
	return 0;
}

/* Note a structured output constraint (checked by fe_params_constrain). */
static int set_grammar(struct fe_params *p, const char *param, enum grammar_kind kind,
		       const cJSON *spec, int lenient)
{
	if (p->n_cons == FE_MAX_CONSTRAINTS)
		return bad(param, "'%s': too many structured output constraints", param);
	struct fe_constraint *c = &p->cons[p->n_cons++];
	c->param = param;
	c->kind = kind;
	c->spec = cJSON_IsString(spec) ? xstrdup(spec->valuestring)
				       : spec ? cJSON_PrintUnformatted(spec) : xstrdup("");
	c->lenient = lenient;
	return 0;
}

int fe_params_constrain(struct fe_params *p, const char **param)
{
	if (!p->n_cons)
		return 0;
	struct fe_constraint *c = &p->cons[p->n_cons - 1];
	*param = c->param;
	if (p->n_cons > 1)
		return err_set(-EINVAL, "'%s': only one structured output constraint (response_format, "
			       "structured_outputs, guided_*, tool_choice required/named) may be given",
			       c->param);
	struct grammar *g;
	if (grammar_get(c->kind, c->spec, strlen(c->spec), c->lenient ? GRAMMAR_LENIENT : 0,
			&g) < 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", err_msg());	/* err_set reuses its buffer */
		return err_set(-EINVAL, "'%s': %s", c->param, why);
	}
	grammar_unref(g);
	p->gen.grammar_kind = xstrdup(grammar_kind_name(c->kind));
	p->gen.grammar_spec = xstrdup(c->spec);
	p->gen.grammar_lenient = c->lenient;
	p->forced_tools = !strcmp(c->param, "tool_choice");
	return 0;
}

/* response_format, vLLM's structured_outputs and guided_* fields. */
static int parse_structured(const cJSON *o, struct fe_params *p)
{
	const cJSON *v = field(o, "response_format");
	int rc = 0;

	if (v) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
		if (!cJSON_IsObject(v) || !cJSON_IsString(type))
			return bad("response_format", "'%s' must be an object with a 'type'",
				   "response_format");
		if (!strcmp(type->valuestring, "json_object")) {
			rc = set_grammar(p, "response_format", GRAMMAR_JSON_OBJECT, NULL, 0);
		} else if (!strcmp(type->valuestring, "json_schema")) {
			const cJSON *js = cJSON_GetObjectItemCaseSensitive(v, "json_schema");
			const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
			const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
			if (!cJSON_IsObject(js) || !(cJSON_IsObject(schema) || cJSON_IsBool(schema)))
				return bad("response_format", "'%s': json_schema needs a 'schema' object",
					   "response_format");
			rc = set_grammar(p, "response_format", GRAMMAR_JSON_SCHEMA, schema,
					 cJSON_IsFalse(strict));
		} else if (strcmp(type->valuestring, "text")) {
			return bad("response_format", "'%s': type must be \"text\", \"json_object\" "
				   "or \"json_schema\"", "response_format");
		}
	}
	static const struct { const char *name, *guided; enum grammar_kind kind; } guided[] = {
		{ "json", "guided_json", GRAMMAR_JSON_SCHEMA },
		{ "regex", "guided_regex", GRAMMAR_REGEX },
		{ "choice", "guided_choice", GRAMMAR_CHOICE },
		{ "grammar", "guided_grammar", GRAMMAR_GBNF },
	};
	const cJSON *so = field(o, "structured_outputs");
	if (so && !cJSON_IsObject(so))
		return bad("structured_outputs", "'%s' must be an object", "structured_outputs");
	for (size_t i = 0; i < sizeof(guided) / sizeof(guided[0]) && !rc; i++) {
		const char *param = guided[i].guided;
		const cJSON *g = field(o, param);
		if (!g && so && (g = field(so, guided[i].name)))
			param = "structured_outputs";
		if (!g)
			continue;
		int ok = guided[i].kind == GRAMMAR_JSON_SCHEMA ? cJSON_IsObject(g) || cJSON_IsString(g)
			 : guided[i].kind == GRAMMAR_CHOICE ? cJSON_IsArray(g) : cJSON_IsString(g);
		if (!ok)
			return bad(param, "'%s' has the wrong type", param);
		rc = set_grammar(p, param, guided[i].kind, g, 0);	/* a string: the schema's text */
	}
	if (!rc && so && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "json_object")))
		rc = set_grammar(p, "structured_outputs", GRAMMAR_JSON_OBJECT, NULL, 0);
	return rc;
}

/* tool_choice "required" or naming a function: the output is constrained
 * to hermes-style calls (grammar.h GRAMMAR_TOOL_CALL/S) of the tools. */
static int parse_forced_tools(const cJSON *o, struct fe_params *p)
{
	const cJSON *tc = field(o, "tool_choice"), *tools = field(o, "tools"), *t;
	const char *name = NULL;
	int parallel = 1;

	if (get_bool(o, "parallel_tool_calls", &parallel) < 0)
		return -EINVAL;
	if (cJSON_IsObject(tc)) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsString(n))
			return bad("tool_choice", "'%s' must name a function: {\"type\":\"function\","
				   "\"function\":{\"name\":...}}", "tool_choice");
		name = n->valuestring;
	} else if (!(cJSON_IsString(tc) && !strcmp(tc->valuestring, "required"))) {
		return 0;
	}
	if (!cJSON_IsArray(tools) || !cJSON_GetArraySize(tools))
		return bad("tool_choice", "'%s' requires 'tools'", "tool_choice");
	cJSON *any = cJSON_CreateArray();
	cJSON_ArrayForEach(t, tools) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
		if (!cJSON_IsString(n)) {
			cJSON_Delete(any);
			return bad("tools", "each of '%s' must be {\"type\":\"function\",\"function\":"
				   "{\"name\":...}}", "tools");
		}
		if (name && strcmp(name, n->valuestring))
			continue;
		cJSON *call = cJSON_CreateObject();
		cJSON_AddStringToObject(call, "type", "object");
		cJSON *props = cJSON_AddObjectToObject(call, "properties");
		cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", n->valuestring);
		cJSON_AddItemToObject(props, "arguments", params ? cJSON_Duplicate(params, 1)
								 : cJSON_Parse("{\"type\":\"object\"}"));
		cJSON *req = cJSON_AddArrayToObject(call, "required");
		cJSON_AddItemToArray(req, cJSON_CreateString("name"));
		cJSON_AddItemToArray(req, cJSON_CreateString("arguments"));
		cJSON_AddFalseToObject(call, "additionalProperties");
		cJSON_AddItemToArray(any, call);
	}
	if (!cJSON_GetArraySize(any)) {
		cJSON_Delete(any);
		return bad("tool_choice", "'%s' names a function that is not in 'tools'", "tool_choice");
	}
	cJSON *schema = cJSON_CreateObject();
	cJSON_AddItemToObject(schema, "anyOf", any);
	int rc = set_grammar(p, "tool_choice", name || !parallel ? GRAMMAR_TOOL_CALL
								 : GRAMMAR_TOOL_CALLS, schema, 1);
	cJSON_Delete(schema);
	return rc;
}

int fe_params_parse(enum fe_kind kind, const char *body, size_t len, struct fe_params *p,
		    const char **param)
{
	int rc = 0;
	double d;
	long l;

	memset(p, 0, sizeof(*p));
	gen_request_init(&p->gen);
	p->kind = kind;
	p->logprobs = -1;
	p->prompt_logprobs = -1;
	p->max_tokens = -1;
	bad_param = NULL;
	*param = NULL;
	if (!utf8_valid((const unsigned char *)body, len))
		return err_set(-EINVAL, "the request body is not valid UTF-8");
	cJSON *o = cJSON_ParseWithLength(body, len);
	if (!o)
		return err_set(-EINVAL, "the request body is not valid JSON");
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return err_set(-EINVAL, "the request body must be a JSON object");
	}
	const cJSON *model = field(o, "model");
	if (!model)
		rc = bad("model", "'%s' is required", "model");
	else if (!cJSON_IsString(model))
		rc = bad("model", "'%s' must be a string", "model");
	else
		p->model = xstrdup(model->valuestring);
	if (!rc)
		rc = kind == FE_CHAT ? parse_messages(o, p) : parse_prompt(o, p);
	if (!rc) rc = get_bool(o, "stream", &p->stream);
	if (!rc) rc = refuse_unimplemented(o, p->stream);
	if (!rc) rc = parse_structured(o, p);
	if (!rc && kind == FE_CHAT) rc = parse_forced_tools(o, p);
	const cJSON *so = field(o, "stream_options");
	if (!rc && so) {
		if (!cJSON_IsObject(so))
			rc = bad("stream_options", "'%s' must be an object", "stream_options");
		else
			rc = get_bool(so, "include_usage", &p->include_usage);
	}
	l = -1;
	if (!rc) rc = get_int(o, "max_tokens", 0, 1e9, &l);
	if (!rc) rc = get_int(o, "max_completion_tokens", 0, 1e9, &l);
	p->max_tokens = l;
	if (!rc) rc = get_number(o, "temperature", 0, 2, &p->gen.s.temperature);
	if (!rc) rc = get_number(o, "top_p", 0, 1, &p->gen.s.top_p);
	if (!rc && field(o, "top_p") && p->gen.s.top_p == 0)
		rc = bad("top_p", "'%s' must be greater than 0", "top_p");
	l = -1;
	if (!rc) rc = get_int(o, "top_k", -1, 1e9, &l);
	p->gen.s.top_k = l;
	if (!rc) rc = get_number(o, "min_p", 0, 1, &p->gen.s.min_p);
	d = NAN;
	if (!rc) rc = get_number(o, "seed", -9.2e18, 1.8e19, &d);
	if (!rc && !isnan(d)) {
		if (d != floor(d))
			rc = bad("seed", "'%s' must be an integer", "seed");
		p->gen.s.has_seed = 1;
		p->gen.s.seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
	}
	if (!rc) rc = get_number(o, "presence_penalty", -2, 2, &p->gen.s.presence_penalty);
	if (!rc) rc = get_number(o, "frequency_penalty", -2, 2, &p->gen.s.frequency_penalty);
	if (!rc) rc = get_number(o, "repetition_penalty", 0, 100, &p->gen.s.repetition_penalty);
	if (!rc && field(o, "repetition_penalty") && p->gen.s.repetition_penalty == 0)
		rc = bad("repetition_penalty", "'%s' must be greater than 0", "repetition_penalty");
	if (!rc) rc = get_logit_bias(o, p);
	if (!rc) rc = get_stop(o, p);
	if (!rc) rc = get_bool(o, "include_stop_str_in_output", &p->include_stop);
	l = 1;
	if (!rc) rc = get_int(o, "n", 1, FE_MAX_N, &l);
	p->n = (int)l;
	const cJSON *user = field(o, "user");
	if (!rc && user && !cJSON_IsString(user))
		rc = bad("user", "'%s' must be a string", "user");
	if (!rc) rc = get_bool(o, "ignore_eos", &p->gen.ignore_eos);
	l = 0;
	if (!rc) rc = get_int(o, "min_tokens", 0, 1e9, &l);
	p->gen.min_tokens = l;
	if (kind == FE_CHAT) {
		int lp = 0;
		l = 0;
		if (!rc) rc = get_bool(o, "logprobs", &lp);
		if (!rc) rc = get_int(o, "top_logprobs", 0, 20, &l);
		if (!rc && l > 0 && !lp)
			rc = bad("top_logprobs", "'%s' requires 'logprobs': true", "top_logprobs");
		p->logprobs = lp ? (int)l : -1;
	} else {
		l = -1;
		if (!rc) rc = get_int(o, "logprobs", 0, 20, &l);
		p->logprobs = (int)l;
		if (!rc) rc = get_bool(o, "echo", &p->echo);
	}
	p->gen.logprobs = p->logprobs;
	l = -1;
	if (!rc) rc = get_int(o, "prompt_logprobs", 0, 20, &l);
	p->prompt_logprobs = (int)l;
	if (!rc && l >= 0 && p->stream)
		rc = bad("prompt_logprobs", "'%s' is not supported with 'stream' yet",
			 "prompt_logprobs");
	/* the engine computes them for prompt_logprobs, and for an echo's
	 * logprobs (the prompt's entries) */
	p->gen.prompt_logprobs = p->echo && p->logprobs > l ? p->logprobs : (int)l;
	cJSON_Delete(o);
	*param = bad_param;
	if (rc < 0)
		fe_params_release(p);
	return rc;
}

void fe_params_release(struct fe_params *p)
{
	free(p->model);
	for (size_t i = 0; i < p->nstops; i++)
		free(p->stops[i]);
	gen_request_release(&p->gen);
	cJSON_free(p->template_json);
	cJSON_free(p->tools_json);
	free(p->prompt_text);
	free(p->prompt_ids);
	for (size_t i = 0; i < p->nprompts; i++) {
		free(p->prompts[i].text);
		free(p->prompts[i].ids);
	}
	free(p->prompts);
	for (int i = 0; i < p->n_cons; i++)
		free(p->cons[i].spec);
	memset(p, 0, sizeof(*p));
}
