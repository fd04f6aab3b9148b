/*
 * responses.c - the Responses API (POST /v1/responses) as a chat
 * completion (see apis.h).
 *
 * Request: input (a string, or items: messages with roles user, system,
 * developer, assistant and text parts; function_call and
 * function_call_output items; reasoning items, as the assistant's
 * reasoning_content), instructions (a system message first),
 * function tools (flattened), tool_choice, parallel_tool_calls,
 * max_output_tokens (a bound),
 * temperature, top_p, stream, reasoning.effort (the template's
 * reasoning_effort), text.format (response_format).  Stateless:
 * previous_response_id, conversation and background are refused; store is
 * ignored (nothing is stored).  Logprobs are refused (not written yet).  Output: a message item (output_text), a
 * reasoning item for parsed reasoning, function_call items; streamed as
 * the documented events with sequence numbers.
 */
#include "core/frontend/apis.h"
#include "core/err.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *bad_param;

static int bad(const char *param, const char *msg)
{
	bad_param = param;
	return err_set(-EINVAL, "%s", msg);
}

static const cJSON *field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Content as a string, or a list of text parts joined (parts of other
 * types are refused). */
static int text_of(const cJSON *content, const char *param, cJSON **out)
{
	if (cJSON_IsString(content)) {
		*out = cJSON_CreateString(content->valuestring);
		return 0;
	}
	if (!cJSON_IsArray(content))
		return bad(param, "'content' must be a string or a list of parts");
	struct strbuf s = STRBUF_INIT;
	const cJSON *part;
	cJSON_ArrayForEach(part, content) {
		const cJSON *t = field(part, "type"), *txt = field(part, "text");
		if (!cJSON_IsString(t) || (strcmp(t->valuestring, "input_text") &&
					   strcmp(t->valuestring, "output_text") &&
					   strcmp(t->valuestring, "text"))) {
			sb_release(&s);
			return bad(param, "content parts must be of type input_text or "
				   "output_text (input_image, input_file and input_audio are "
				   "not supported)");
		}
		if (!cJSON_IsString(txt)) {
			sb_release(&s);
			return bad(param, "a text part must have a string 'text'");
		}
		if (s.len)
			sb_addch(&s, '\n');
		sb_adds(&s, txt->valuestring);
	}
	*out = cJSON_CreateString(s.buf ? s.buf : "");
	sb_release(&s);
	return 0;
}

static cJSON *message(const char *role, cJSON *content)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddItemToObject(m, "content", content);
	return m;
}

/* A function_call item: a tool call of the assistant message before it
 * (one is started when the last message is not the assistant's). */
static int function_call(const cJSON *it, cJSON *msgs)
{
	const cJSON *id = field(it, "call_id"), *name = field(it, "name"),
		    *args = field(it, "arguments");
	if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsString(args))
		return bad("input", "a function_call item needs string 'call_id', 'name' and "
			   "'arguments'");
	cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
	const cJSON *role = last ? field(last, "role") : NULL;
	if (!role || strcmp(role->valuestring, "assistant")) {
		last = message("assistant", cJSON_CreateString(""));
		cJSON_AddItemToArray(msgs, last);
	}
	cJSON *calls = cJSON_GetObjectItemCaseSensitive(last, "tool_calls");
	if (!calls)
		calls = cJSON_AddArrayToObject(last, "tool_calls");
	cJSON *c = cJSON_CreateObject(), *fn;
	cJSON_AddStringToObject(c, "id", id->valuestring);
	cJSON_AddStringToObject(c, "type", "function");
	fn = cJSON_AddObjectToObject(c, "function");
	cJSON_AddStringToObject(fn, "name", name->valuestring);
	/* arguments that are not JSON (a model's malformed call sent back)
	 * reach the template as the text they are */
	cJSON *parsed = cJSON_Parse(args->valuestring);
	if (parsed || !*args->valuestring) {
		cJSON_AddStringToObject(fn, "arguments", args->valuestring);
	} else {
		cJSON *str = cJSON_CreateString(args->valuestring);
		char *quoted = cJSON_PrintUnformatted(str);
		cJSON_AddStringToObject(fn, "arguments", quoted);
		free(quoted);
		cJSON_Delete(str);
	}
	cJSON_Delete(parsed);
	cJSON_AddItemToArray(calls, c);
	return 0;
}

/* A reasoning item: an assistant message of its text (as
 * reasoning_content, which templates may render), which the calls after
 * it join. */
static int reasoning(const cJSON *it, cJSON *msgs)
{
	const cJSON *content = field(it, "content"), *part;
	struct strbuf s = STRBUF_INIT;
	if (content && !cJSON_IsArray(content))
		return bad("input", "a reasoning item's 'content' must be a list of parts");
	cJSON_ArrayForEach(part, content) {
		const cJSON *txt = field(part, "text");
		if (!cJSON_IsString(txt)) {
			sb_release(&s);
			return bad("input", "reasoning parts must have a string 'text'");
		}
		sb_adds(&s, txt->valuestring);
	}
	cJSON *m = message("assistant", cJSON_CreateString(""));
	cJSON_AddStringToObject(m, "reasoning_content", s.buf);
	cJSON_AddItemToArray(msgs, m);
	sb_release(&s);
	return 0;
}

static int input_item(const cJSON *it, cJSON *msgs)
{
	if (!cJSON_IsObject(it))
		return bad("input", "each input item must be an object");
	const cJSON *type = field(it, "type");
	const char *t = cJSON_IsString(type) ? type->valuestring : "message";
	if (!strcmp(t, "function_call"))
		return function_call(it, msgs);
	if (!strcmp(t, "reasoning"))
		return reasoning(it, msgs);
	if (!strcmp(t, "function_call_output")) {
		const cJSON *id = field(it, "call_id"), *o = field(it, "output");
		cJSON *content;
		if (!cJSON_IsString(id) || !o)
			return bad("input", "a function_call_output item needs a string "
				   "'call_id' and an 'output'");
		if (text_of(o, "input", &content) < 0)
			return -EINVAL;
		cJSON *m = message("tool", content);
		cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
		cJSON_AddItemToArray(msgs, m);
		return 0;
	}
	if (strcmp(t, "message"))
		return bad("input", "input items must be of type message, function_call, "
			   "function_call_output or reasoning");
	const cJSON *role = field(it, "role");
	static const char *const roles[] = { "user", "system", "developer", "assistant" };
	size_t i;
	for (i = 0; cJSON_IsString(role) && i < 4; i++)
		if (!strcmp(role->valuestring, roles[i]))
			break;
	if (!cJSON_IsString(role) || i == 4)
		return bad("input", "a message's 'role' must be user, system, developer or "
			   "assistant");
	cJSON *content;
	if (text_of(field(it, "content"), "input", &content) < 0)
		return -EINVAL;
	cJSON_AddItemToArray(msgs, message(i == 2 ? "system" : roles[i], content));
	return 0;
}

static int tools(const cJSON *in, cJSON *chat)
{
	if (!cJSON_IsArray(in))
		return bad("tools", "'tools' must be an array");
	cJSON *out = cJSON_AddArrayToObject(chat, "tools");
	const cJSON *t;
	cJSON_ArrayForEach(t, in) {
		const cJSON *type = field(t, "type"), *name = field(t, "name");
		if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
			return bad("tools", "only tools of type function are supported");
		if (!cJSON_IsString(name))
			return bad("tools", "a function tool needs a string 'name'");
		cJSON *o = cJSON_CreateObject(), *fn;
		cJSON_AddStringToObject(o, "type", "function");
		fn = cJSON_AddObjectToObject(o, "function");
		static const char *const keep[] = { "name", "description", "parameters", "strict" };
		for (size_t i = 0; i < 4; i++)
			if (field(t, keep[i]))
				cJSON_AddItemToObject(fn, keep[i],
						      cJSON_Duplicate(field(t, keep[i]), 1));
		cJSON_AddItemToArray(out, o);
	}
	return 0;
}

static int tool_choice(const cJSON *tc, cJSON *chat)
{
	if (cJSON_IsString(tc)) {
		cJSON_AddStringToObject(chat, "tool_choice", tc->valuestring);
		return 0;
	}
	const cJSON *type = field(tc, "type"), *name = field(tc, "name");
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
	    !cJSON_IsString(name))
		return bad("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" "
			   "or {\"type\":\"function\",\"name\":...}");
	cJSON *o = cJSON_AddObjectToObject(chat, "tool_choice");
	cJSON_AddStringToObject(o, "type", "function");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "name", name->valuestring);
	return 0;
}

/* text.format -> response_format (the chat path decides what it serves). */
static int text_format(const cJSON *text, cJSON *chat)
{
	const cJSON *f = field(text, "format"), *type = f ? field(f, "type") : NULL;
	if (!f)
		return 0;
	if (!cJSON_IsString(type))
		return bad("text", "'text.format' needs a string 'type'");
	cJSON *rf = cJSON_AddObjectToObject(chat, "response_format");
	cJSON_AddStringToObject(rf, "type", type->valuestring);
	if (!strcmp(type->valuestring, "json_schema")) {
		cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
		static const char *const keep[] = { "name", "schema", "strict", "description" };
		for (size_t i = 0; i < 4; i++)
			if (field(f, keep[i]))
				cJSON_AddItemToObject(js, keep[i],
						      cJSON_Duplicate(field(f, keep[i]), 1));
	}
	return 0;
}

static int translate(const cJSON *o, cJSON *chat, struct strbuf *echo)
{
	static const char *const refused[] = { "previous_response_id", "conversation" };
	for (size_t i = 0; i < 2; i++)
		if (field(o, refused[i])) {
			bad_param = refused[i];
			return err_set(-EINVAL, "'%s' is not supported: this server keeps no "
				       "responses; send the whole conversation as 'input'",
				       refused[i]);
		}
	if (cJSON_IsTrue(field(o, "background")))
		return bad("background", "'background' responses are not supported");
	/* logprobs are not written in this API's shapes yet: refused, not
	 * silently left out */
	const cJSON *v = field(o, "top_logprobs"), *inc = field(o, "include"), *x;
	if (v && !(cJSON_IsNumber(v) && v->valuedouble == 0))
		return bad("top_logprobs", "'top_logprobs' is not supported by this server yet");
	if (!cJSON_IsArray(inc))
		inc = NULL;
	cJSON_ArrayForEach(x, inc)
		if (cJSON_IsString(x) && strstr(x->valuestring, "logprobs"))
			return bad("include", "'include': logprobs are not supported by this "
				   "server yet");
	const cJSON *model = field(o, "model"), *input = field(o, "input");
	if (!cJSON_IsString(model))
		return bad("model", "'model' must be a string");
	cJSON_AddStringToObject(chat, "model", model->valuestring);
	cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
	v = field(o, "instructions");
	if (v && !cJSON_IsString(v))
		return bad("instructions", "'instructions' must be a string");
	if (v)
		cJSON_AddItemToArray(msgs, message("system", cJSON_CreateString(v->valuestring)));
	if (cJSON_IsString(input)) {
		cJSON_AddItemToArray(msgs, message("user", cJSON_CreateString(input->valuestring)));
	} else if (cJSON_IsArray(input) && cJSON_GetArraySize(input)) {
		const cJSON *it;
		cJSON_ArrayForEach(it, input)
			if (input_item(it, msgs) < 0)
				return -EINVAL;
	} else {
		return bad("input", "'input' must be a string or a non-empty list of items");
	}
	if ((v = field(o, "tools")) && tools(v, chat) < 0)
		return -EINVAL;
	if ((v = field(o, "tool_choice")) && tool_choice(v, chat) < 0)
		return -EINVAL;
	if ((v = field(o, "text")) && text_format(v, chat) < 0)
		return -EINVAL;
	/* checked by the chat path under these names */
	static const char *const pass[][2] = { { "max_output_tokens", "max_tokens" },
		{ "temperature", "temperature" }, { "top_p", "top_p" }, { "stream", "stream" },
		{ "parallel_tool_calls", "parallel_tool_calls" } };
	for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
		if ((v = field(o, pass[i][0])))
			cJSON_AddItemToObject(chat, pass[i][1], cJSON_Duplicate(v, 1));
	v = field(o, "reasoning");
	if (v && !cJSON_IsObject(v))
		return bad("reasoning", "'reasoning' must be an object");
	const cJSON *effort = v ? field(v, "effort") : NULL;
	if (effort && !cJSON_IsString(effort))
		return bad("reasoning", "'reasoning.effort' must be a string");
	if (effort)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(chat, "chat_template_kwargs"),
					"reasoning_effort", effort->valuestring);
	/* what the response objects repeat */
	static const char *const echoed[] = { "instructions", "max_output_tokens", "temperature",
		"top_p", "tool_choice", "tools", "reasoning", "text", "metadata",
		"parallel_tool_calls" };
	for (size_t i = 0; i < sizeof(echoed) / sizeof(echoed[0]); i++) {
		char *s = cJSON_PrintUnformatted(field(o, echoed[i]) ? field(o, echoed[i])
								    : NULL);
		/* parallel_tool_calls defaults to true */
		sb_addf(echo, "\"%s\":%s,", echoed[i], s ? s : i == 9 ? "true" : "null");
		free(s);
	}
	return 0;
}

int fe_responses_to_chat(const char *body, size_t len, char **chat, char **echo,
			 const char **param)
{
	cJSON *o = cJSON_ParseWithLength(body, len), *c = cJSON_CreateObject();
	struct strbuf e = STRBUF_INIT;
	int rc;
	bad_param = NULL;
	if (!cJSON_IsObject(o))
		rc = bad(NULL, "the request body must be a JSON object");
	else
		rc = translate(o, c, &e);
	*param = bad_param;
	*chat = rc ? NULL : cJSON_PrintUnformatted(c);
	*echo = rc ? NULL : sb_detach(&e, NULL);
	sb_release(&e);
	cJSON_Delete(o);
	cJSON_Delete(c);
	return rc;
}

/* ---- output --------------------------------------------------------------- */

/* One event: "event: TYPE" and its data, which begins with the type and
 * the sequence number; the caller writes the rest of the object and
 * ends it with event_end(). */
static void event(struct fe_alt *a, const char *type, struct strbuf *out)
{
	sb_addf(out, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%ld", type, type,
		a->seq++);
}

static void event_end(struct strbuf *out)
{
	sb_adds(out, "}\n\n");
}

static void item_id(const struct fe_alt *a, const char *prefix, int item, struct strbuf *out)
{
	sb_addf(out, "\"%s_%s_%d\"", prefix, a->id + 5, item);	/* a->id: "resp_..." */
}

/* The response object; status "in_progress" has no output yet. */
static void response(struct fe_alt *a, const char *status, const char *incomplete,
		     long output_tokens, struct strbuf *out)
{
	int done = strcmp(status, "in_progress");
	sb_adds(out, "{\"id\":");
	sb_add_json_str(out, a->id, strlen(a->id));
	sb_addf(out, ",\"object\":\"response\",\"created_at\":%ld,\"status\":\"%s\","
		"\"error\":null,\"incomplete_details\":", a->created, status);
	if (incomplete)
		sb_addf(out, "{\"reason\":\"%s\"}", incomplete);
	else
		sb_adds(out, "null");
	sb_adds(out, ",\"model\":");
	sb_add_json_str(out, a->model, strlen(a->model));
	sb_addf(out, ",%s\"previous_response_id\":null,"
		"\"store\":false,\"truncation\":\"disabled\",\"output\":[%s]", a->echo,
		done ? a->items.buf : "");
	if (done)
		sb_addf(out, ",\"usage\":{\"input_tokens\":%ld,\"input_tokens_details\":"
			"{\"cached_tokens\":0},\"output_tokens\":%ld,\"output_tokens_details\":"
			"{\"reasoning_tokens\":0},\"total_tokens\":%ld}", a->input_tokens,
			output_tokens, a->input_tokens + output_tokens);
	else
		sb_adds(out, ",\"usage\":null");
	sb_addch(out, '}');
}

void fe_resp_begin(struct fe_alt *a, struct strbuf *out)
{
	static const char *const ev[] = { "response.created", "response.in_progress" };
	for (int i = 0; i < 2; i++) {
		event(a, ev[i], out);
		sb_adds(out, ",\"response\":");
		response(a, "in_progress", NULL, 0, out);
		event_end(out);
	}
}

/* A text item: message (output_text) or reasoning (reasoning_text), its
 * text so far text[0..n) ("status" while in progress). */
static void text_item(const struct fe_alt *a, int reasoning, const char *status,
		      const char *text, size_t n, struct strbuf *out)
{
	sb_adds(out, "{\"id\":");
	item_id(a, reasoning ? "rs" : "msg", a->nitems, out);
	if (reasoning)
		sb_adds(out, ",\"type\":\"reasoning\",\"summary\":[],\"content\":[");
	else
		sb_addf(out, ",\"type\":\"message\",\"status\":\"%s\",\"role\":\"assistant\","
			"\"content\":[", status);
	if (text) {
		sb_addf(out, "{\"type\":\"%s\",\"text\":", reasoning ? "reasoning_text"
								      : "output_text");
		sb_add_json_str(out, text, n);
		sb_adds(out, reasoning ? "}" : ",\"annotations\":[],\"logprobs\":[]}");
	}
	sb_adds(out, "]}");
}

static void part(int reasoning, const char *text, size_t n, struct strbuf *out)
{
	sb_addf(out, ",\"part\":{\"type\":\"%s\",\"text\":", reasoning ? "reasoning_text"
									 : "output_text");
	sb_add_json_str(out, text, n);
	sb_adds(out, reasoning ? "}" : ",\"annotations\":[],\"logprobs\":[]}");
}

/* The head of an event about the open item's content. */
static void content_event(struct fe_alt *a, int reasoning, const char *type, struct strbuf *out)
{
	event(a, type, out);
	sb_adds(out, ",\"item_id\":");
	item_id(a, reasoning ? "rs" : "msg", a->nitems, out);
	sb_addf(out, ",\"output_index\":%d,\"content_index\":0", a->nitems);
}

void fe_resp_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out)
{
	if (!a->stream)
		return;
	if (a->open < 0) {	/* a new item */
		event(a, "response.output_item.added", out);
		sb_addf(out, ",\"output_index\":%d,\"item\":", a->nitems);
		text_item(a, reasoning, "in_progress", NULL, 0, out);
		event_end(out);
		content_event(a, reasoning, "response.content_part.added", out);
		part(reasoning, "", 0, out);
		event_end(out);
	}
	content_event(a, reasoning, reasoning ? "response.reasoning_text.delta"
				   : "response.output_text.delta", out);
	sb_adds(out, ",\"delta\":");
	sb_add_json_str(out, text, n);
	if (!reasoning)
		sb_adds(out, ",\"logprobs\":[]");
	event_end(out);
}

void fe_resp_close(struct fe_alt *a, struct strbuf *out)
{
	int reasoning = a->open == 1;
	if (a->items.len)
		sb_addch(&a->items, ',');
	text_item(a, reasoning, "completed", a->cur.buf, a->cur.len, &a->items);
	if (!a->stream)
		return;
	content_event(a, reasoning, reasoning ? "response.reasoning_text.done"
				   : "response.output_text.done", out);
	sb_adds(out, ",\"text\":");
	sb_add_json_str(out, a->cur.buf, a->cur.len);
	if (!reasoning)
		sb_adds(out, ",\"logprobs\":[]");
	event_end(out);
	content_event(a, reasoning, "response.content_part.done", out);
	part(reasoning, a->cur.buf, a->cur.len, out);
	event_end(out);
	event(a, "response.output_item.done", out);
	sb_addf(out, ",\"output_index\":%d,\"item\":", a->nitems);
	text_item(a, reasoning, "completed", a->cur.buf, a->cur.len, out);
	event_end(out);
}

static void call_item(const struct fe_alt *a, const char *status, const char *call_id,
		      const char *name, const char *args, struct strbuf *out)
{
	sb_adds(out, "{\"id\":");
	item_id(a, "fc", a->nitems, out);
	sb_addf(out, ",\"type\":\"function_call\",\"status\":\"%s\",\"call_id\":", status);
	sb_add_json_str(out, call_id, strlen(call_id));
	sb_adds(out, ",\"name\":");
	sb_add_json_str(out, name, strlen(name));
	sb_adds(out, ",\"arguments\":");
	sb_add_json_str(out, args, strlen(args));
	sb_addch(out, '}');
}

void fe_resp_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		  struct strbuf *out)
{
	if (a->items.len)
		sb_addch(&a->items, ',');
	call_item(a, "completed", call_id, name, args, &a->items);
	if (!a->stream)
		return;
	event(a, "response.output_item.added", out);
	sb_addf(out, ",\"output_index\":%d,\"item\":", a->nitems);
	call_item(a, "in_progress", call_id, name, "", out);
	event_end(out);
	static const char *const ev[] = { "response.function_call_arguments.delta",
					  "response.function_call_arguments.done" };
	for (int i = 0; i < 2; i++) {
		event(a, ev[i], out);
		sb_adds(out, ",\"item_id\":");
		item_id(a, "fc", a->nitems, out);
		sb_addf(out, ",\"output_index\":%d,\"%s\":", a->nitems, i ? "arguments" : "delta");
		sb_add_json_str(out, args, strlen(args));
		if (i) {
			sb_adds(out, ",\"name\":");
			sb_add_json_str(out, name, strlen(name));
		}
		event_end(out);
	}
	event(a, "response.output_item.done", out);
	sb_addf(out, ",\"output_index\":%d,\"item\":", a->nitems);
	call_item(a, "completed", call_id, name, args, out);
	event_end(out);
}

void fe_resp_end(struct fe_alt *a, const char *finish, long output_tokens, struct strbuf *out)
{
	int incomplete = !strcmp(finish, "length");
	const char *status = incomplete ? "incomplete" : "completed";
	const char *why = incomplete ? "max_output_tokens" : NULL;
	if (!a->stream) {
		response(a, status, why, output_tokens, out);
		return;
	}
	event(a, incomplete ? "response.incomplete" : "response.completed", out);
	sb_adds(out, ",\"response\":");
	response(a, status, why, output_tokens, out);
	event_end(out);
}
