/*
 * messages.c - Anthropic's Messages API (POST /v1/messages) as a chat
 * completion (see apis.h).
 *
 * Request: model, max_tokens (required; a bound: the end of the context
 * also ends the answer), system (a string or text blocks), messages
 * (user / assistant; content a string or blocks: text, tool_use and
 * thinking (as reasoning_content) from the assistant, tool_result from
 * the user), temperature, top_p, top_k, stop_sequences, stream, tools
 * (name, description, input_schema), tool_choice (auto, any, tool, none;
 * disable_parallel_tool_use),
 * thinking (the template's enable_thinking), output_config.format
 * (response_format).  /v1/messages/count_tokens bodies need no
 * max_tokens.  Output: content blocks thinking (parsed reasoning), text
 * and tool_use; stop_reason end_turn, max_tokens, stop_sequence or
 * tool_use; streamed as Anthropic's events.  Errors are
 * {"type":"error","error":{"type":..,"message":..}}.
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

/* A string, or text blocks joined with "\n" into one. */
static int text_of(const cJSON *v, const char *param, struct strbuf *s)
{
	if (cJSON_IsString(v)) {
		sb_adds(s, v->valuestring);
		return 0;
	}
	if (!cJSON_IsArray(v))
		return bad(param, "expected a string or a list of text blocks");
	const cJSON *b;
	size_t start = s->len;
	cJSON_ArrayForEach(b, v) {
		const cJSON *t = field(b, "type"), *txt = field(b, "text");
		if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(txt))
			return bad(param, "expected text blocks ({\"type\":\"text\",\"text\":...})");
		if (s->len > start)
			sb_addch(s, '\n');
		sb_adds(s, txt->valuestring);
	}
	return 0;
}

/* (content "" rather than null: templates test it as a string) */
static cJSON *message(const char *role, const char *text)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", text);
	return m;
}

static int tool_use(const cJSON *b, cJSON *calls)
{
	const cJSON *id = field(b, "id"), *name = field(b, "name"), *input = field(b, "input");
	if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsObject(input))
		return bad("messages", "a tool_use block needs string 'id' and 'name' and an "
			   "object 'input'");
	cJSON *c = cJSON_CreateObject(), *fn;
	char *args = cJSON_PrintUnformatted(input);
	cJSON_AddStringToObject(c, "id", id->valuestring);
	cJSON_AddStringToObject(c, "type", "function");
	fn = cJSON_AddObjectToObject(c, "function");
	cJSON_AddStringToObject(fn, "name", name->valuestring);
	cJSON_AddStringToObject(fn, "arguments", args);
	free(args);
	cJSON_AddItemToArray(calls, c);
	return 0;
}

static int tool_result(const cJSON *b, cJSON *msgs)
{
	const cJSON *id = field(b, "tool_use_id"), *content = field(b, "content");
	struct strbuf s = STRBUF_INIT;
	if (!cJSON_IsString(id))
		return bad("messages", "a tool_result block needs a string 'tool_use_id'");
	if (content && text_of(content, "messages", &s) < 0) {
		sb_release(&s);
		return -EINVAL;
	}
	cJSON *m = message("tool", s.buf ? s.buf : "");
	cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
	cJSON_AddItemToArray(msgs, m);
	sb_release(&s);
	return 0;
}

/* One message: tool results first (as "tool" messages), then its text
 * and tool calls as one message. */
static int one_message(const cJSON *m, cJSON *msgs)
{
	const cJSON *role = field(m, "role"), *content = field(m, "content"), *b;
	if (!cJSON_IsObject(m) || !cJSON_IsString(role) ||
	    (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant")))
		return bad("messages", "each message needs a 'role' of user or assistant");
	int user = !strcmp(role->valuestring, "user");
	if (cJSON_IsString(content)) {
		cJSON_AddItemToArray(msgs, message(role->valuestring, content->valuestring));
		return 0;
	}
	if (!cJSON_IsArray(content))
		return bad("messages", "a message's 'content' must be a string or a list of "
			   "content blocks");
	struct strbuf text = STRBUF_INIT, thinking = STRBUF_INIT;
	cJSON *calls = cJSON_CreateArray();
	int rc = 0, ntext = 0, nthink = 0, nresults = 0;
	cJSON_ArrayForEach(b, content) {
		const cJSON *t = field(b, "type"), *txt = field(b, "text");
		const char *type = cJSON_IsString(t) ? t->valuestring : "";
		if (!strcmp(type, "text") && cJSON_IsString(txt)) {
			if (ntext++)
				sb_addch(&text, '\n');
			sb_adds(&text, txt->valuestring);
		} else if (!strcmp(type, "tool_use") && !user) {
			rc = tool_use(b, calls);
		} else if (!strcmp(type, "tool_result") && user) {
			rc = tool_result(b, msgs);
			nresults++;
		} else if (!strcmp(type, "thinking") && !user) {
			const cJSON *th = field(b, "thinking");
			nthink++;
			if (cJSON_IsString(th))
				sb_adds(&thinking, th->valuestring);
		} else if (!strcmp(type, "redacted_thinking") && !user) {
			nthink++;	/* nothing the model could read */
		} else {
			rc = bad("messages", user ? "user content blocks must be text (with a "
				 "string 'text') or tool_result; images and documents are not "
				 "supported" : "assistant content blocks must be text (with a "
				 "string 'text'), thinking or tool_use");
		}
		if (rc)
			break;
	}
	/* (a message of tool results only is those; an empty one is "") */
	if (!rc && (ntext || nthink || cJSON_GetArraySize(calls) || !nresults)) {
		cJSON *msg = message(role->valuestring, text.buf);
		if (nthink)
			cJSON_AddStringToObject(msg, "reasoning_content", thinking.buf);
		if (cJSON_GetArraySize(calls)) {
			cJSON_AddItemToObject(msg, "tool_calls", calls);
			calls = NULL;
		}
		cJSON_AddItemToArray(msgs, msg);
	}
	cJSON_Delete(calls);
	sb_release(&text);
	sb_release(&thinking);
	return rc;
}

static int tools(const cJSON *in, cJSON *chat)
{
	if (!cJSON_IsArray(in))
		return bad("tools", "'tools' must be an array");
	cJSON *out = cJSON_AddArrayToObject(chat, "tools");
	const cJSON *t;
	cJSON_ArrayForEach(t, in) {
		const cJSON *type = field(t, "type"), *name = field(t, "name"),
			    *desc = field(t, "description"), *schema = field(t, "input_schema");
		if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "custom")))
			return bad("tools", "only client tools (name, description, input_schema) "
				   "are supported");
		if (!cJSON_IsString(name) || !cJSON_IsObject(schema))
			return bad("tools", "a tool needs a string 'name' and an object "
				   "'input_schema'");
		if (desc && !cJSON_IsString(desc))
			return bad("tools", "a tool's 'description' must be a string");
		cJSON *o = cJSON_CreateObject(), *fn;
		cJSON_AddStringToObject(o, "type", "function");
		fn = cJSON_AddObjectToObject(o, "function");
		cJSON_AddStringToObject(fn, "name", name->valuestring);
		if (cJSON_IsString(desc))
			cJSON_AddStringToObject(fn, "description", desc->valuestring);
		cJSON_AddItemToObject(fn, "parameters", cJSON_Duplicate(schema, 1));
		cJSON_AddItemToArray(out, o);
	}
	return 0;
}

static int tool_choice(const cJSON *tc, cJSON *chat)
{
	const cJSON *type = field(tc, "type"), *name = field(tc, "name");
	const char *t = cJSON_IsString(type) ? type->valuestring : "";
	if (!strcmp(t, "auto") || !strcmp(t, "none")) {
		cJSON_AddStringToObject(chat, "tool_choice", t);
	} else if (!strcmp(t, "any")) {
		cJSON_AddStringToObject(chat, "tool_choice", "required");
	} else if (!strcmp(t, "tool") && cJSON_IsString(name)) {
		cJSON *o = cJSON_AddObjectToObject(chat, "tool_choice");
		cJSON_AddStringToObject(o, "type", "function");
		cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "name",
					name->valuestring);
	} else {
		return bad("tool_choice", "'tool_choice' must be {\"type\":\"auto\"}, "
			   "{\"type\":\"any\"}, {\"type\":\"none\"} or {\"type\":\"tool\","
			   "\"name\":...}");
	}
	if (cJSON_IsTrue(field(tc, "disable_parallel_tool_use")))
		cJSON_AddFalseToObject(chat, "parallel_tool_calls");
	return 0;
}

static int translate(const cJSON *o, int count, cJSON *chat)
{
	const cJSON *model = field(o, "model"), *maxt = field(o, "max_tokens"),
		    *msgs_in = field(o, "messages"), *v;
	if (!cJSON_IsString(model))
		return bad("model", "model: Field required (a string)");
	if (!maxt && !count)
		return bad("max_tokens", "max_tokens: Field required");
	if (maxt && (!cJSON_IsNumber(maxt) || maxt->valuedouble < 1))
		return bad("max_tokens", "max_tokens: must be an integer of at least 1");
	if (!cJSON_IsArray(msgs_in) || !cJSON_GetArraySize(msgs_in))
		return bad("messages", "messages: Field required (a non-empty list)");
	cJSON_AddStringToObject(chat, "model", model->valuestring);
	cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
	if ((v = field(o, "system"))) {
		struct strbuf s = STRBUF_INIT;
		int rc = text_of(v, "system", &s);
		if (!rc)
			cJSON_AddItemToArray(msgs, message("system", s.buf ? s.buf : ""));
		sb_release(&s);
		if (rc)
			return rc;
	}
	cJSON_ArrayForEach(v, msgs_in)
		if (one_message(v, msgs) < 0)
			return -EINVAL;
	if ((v = field(o, "tools")) && tools(v, chat) < 0)
		return -EINVAL;
	if ((v = field(o, "tool_choice")) && tool_choice(v, chat) < 0)
		return -EINVAL;
	if ((v = field(o, "stop_sequences"))) {
		if (!cJSON_IsArray(v))
			return bad("stop_sequences", "stop_sequences: must be a list of strings");
		cJSON_AddItemToObject(chat, "stop", cJSON_Duplicate(v, 1));
	}
	if ((v = field(o, "thinking"))) {
		const cJSON *t = field(v, "type");
		if (!cJSON_IsString(t) || (strcmp(t->valuestring, "enabled") &&
					   strcmp(t->valuestring, "disabled")))
			return bad("thinking", "thinking.type: must be enabled or disabled");
		cJSON_AddBoolToObject(cJSON_AddObjectToObject(chat, "chat_template_kwargs"),
				      "enable_thinking", !strcmp(t->valuestring, "enabled"));
	}
	/* output_config.format: response_format (the chat path decides what
	 * it serves) */
	v = field(o, "output_config");
	if ((v = v ? field(v, "format") : NULL)) {
		const cJSON *t = field(v, "type"), *schema = field(v, "schema");
		if (!cJSON_IsString(t) || strcmp(t->valuestring, "json_schema") ||
		    !cJSON_IsObject(schema))
			return bad("output_config", "output_config.format: must be {\"type\":"
				   "\"json_schema\",\"schema\":{...}}");
		cJSON *rf = cJSON_AddObjectToObject(chat, "response_format"), *js;
		cJSON_AddStringToObject(rf, "type", "json_schema");
		js = cJSON_AddObjectToObject(rf, "json_schema");
		cJSON_AddStringToObject(js, "name", "output");
		cJSON_AddItemToObject(js, "schema", cJSON_Duplicate(schema, 1));
	}
	/* checked by the chat path under these names */
	static const char *const pass[][2] = { { "max_tokens", "max_tokens" },
		{ "temperature", "temperature" }, { "top_p", "top_p" }, { "top_k", "top_k" },
		{ "stream", "stream" } };
	for (size_t i = 0; i < 5; i++)
		if ((v = field(o, pass[i][0])))
			cJSON_AddItemToObject(chat, pass[i][1], cJSON_Duplicate(v, 1));
	return 0;
}

int fe_messages_to_chat(const char *body, size_t len, int count, char **chat,
			const char **param)
{
	cJSON *o = cJSON_ParseWithLength(body, len), *c = cJSON_CreateObject();
	int rc;
	bad_param = NULL;
	if (!cJSON_IsObject(o))
		rc = bad(NULL, "the request body must be a JSON object");
	else
		rc = translate(o, count, c);
	*param = bad_param;
	*chat = rc ? NULL : cJSON_PrintUnformatted(c);
	cJSON_Delete(o);
	cJSON_Delete(c);
	return rc;
}

/* ---- output --------------------------------------------------------------- */

static void event(const char *type, struct strbuf *out)
{
	sb_addf(out, "event: %s\ndata: {\"type\":\"%s\"", type, type);
}

static void event_end(struct strbuf *out)
{
	sb_adds(out, "}\n\n");
}

void fe_msg_begin(struct fe_alt *a, struct strbuf *out)
{
	event("message_start", out);
	sb_adds(out, ",\"message\":{\"id\":");
	sb_add_json_str(out, a->id, strlen(a->id));
	sb_adds(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
	sb_add_json_str(out, a->model, strlen(a->model));
	sb_addf(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
		"\"usage\":{\"input_tokens\":%ld,\"output_tokens\":0}}", a->input_tokens);
	event_end(out);
	event("ping", out);
	event_end(out);
}

/* A text or thinking block with text[0..n). */
static void text_block(int reasoning, const char *text, size_t n, struct strbuf *out)
{
	sb_addf(out, "{\"type\":\"%s\",\"%s\":", reasoning ? "thinking" : "text",
		reasoning ? "thinking" : "text");
	sb_add_json_str(out, text, n);
	sb_adds(out, reasoning ? ",\"signature\":\"\"}" : "}");
}

void fe_msg_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out)
{
	if (!a->stream)
		return;
	if (a->open < 0) {
		event("content_block_start", out);
		sb_addf(out, ",\"index\":%d,\"content_block\":", a->nitems);
		text_block(reasoning, "", 0, out);
		event_end(out);
	}
	event("content_block_delta", out);
	sb_addf(out, ",\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":", a->nitems,
		reasoning ? "thinking_delta" : "text_delta", reasoning ? "thinking" : "text");
	sb_add_json_str(out, text, n);
	sb_addch(out, '}');
	event_end(out);
}

void fe_msg_close(struct fe_alt *a, struct strbuf *out)
{
	if (a->items.len)
		sb_addch(&a->items, ',');
	text_block(a->open == 1, a->cur.buf, a->cur.len, &a->items);
	if (!a->stream)
		return;
	event("content_block_stop", out);
	sb_addf(out, ",\"index\":%d", a->nitems);
	event_end(out);
}

/* The call's input: its arguments when they are a JSON object, else {}
 * (the API's input is always one). */
static void input_of(const char *args, struct strbuf *out)
{
	cJSON *v = cJSON_Parse(args);
	sb_adds(out, cJSON_IsObject(v) ? args : "{}");
	cJSON_Delete(v);
}

static void tool_block(const char *id, const char *name, const char *input, struct strbuf *out)
{
	sb_adds(out, "{\"type\":\"tool_use\",\"id\":");
	sb_add_json_str(out, id, strlen(id));
	sb_adds(out, ",\"name\":");
	sb_add_json_str(out, name, strlen(name));
	sb_adds(out, ",\"input\":");
	if (input)
		input_of(input, out);
	else
		sb_adds(out, "{}");
	sb_addch(out, '}');
}

void fe_msg_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		 struct strbuf *out)
{
	if (a->items.len)
		sb_addch(&a->items, ',');
	tool_block(call_id, name, args, &a->items);
	if (!a->stream)
		return;
	event("content_block_start", out);
	sb_addf(out, ",\"index\":%d,\"content_block\":", a->nitems);
	tool_block(call_id, name, NULL, out);
	event_end(out);
	struct strbuf in = STRBUF_INIT;
	input_of(args, &in);
	event("content_block_delta", out);
	sb_addf(out, ",\"index\":%d,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
		a->nitems);
	sb_add_json_str(out, in.buf, in.len);
	sb_addch(out, '}');
	event_end(out);
	sb_release(&in);
	event("content_block_stop", out);
	sb_addf(out, ",\"index\":%d", a->nitems);
	event_end(out);
}

static const char *stop_reason(const char *finish, const char *stop_seq)
{
	if (stop_seq)
		return "stop_sequence";
	if (!strcmp(finish, "length"))
		return "max_tokens";
	return !strcmp(finish, "tool_calls") ? "tool_use" : "end_turn";
}

static void stop_fields(const char *finish, const char *stop_seq, struct strbuf *out)
{
	sb_addf(out, "\"stop_reason\":\"%s\",\"stop_sequence\":", stop_reason(finish, stop_seq));
	if (stop_seq)
		sb_add_json_str(out, stop_seq, strlen(stop_seq));
	else
		sb_adds(out, "null");
}

void fe_msg_end(struct fe_alt *a, const char *finish, const char *stop_seq, long output_tokens,
		struct strbuf *out)
{
	if (!a->stream) {
		sb_adds(out, "{\"id\":");
		sb_add_json_str(out, a->id, strlen(a->id));
		sb_adds(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
		sb_add_json_str(out, a->model, strlen(a->model));
		sb_addf(out, ",\"content\":[%s],", a->items.buf);
		stop_fields(finish, stop_seq, out);
		sb_addf(out, ",\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld}}",
			a->input_tokens, output_tokens);
		return;
	}
	event("message_delta", out);
	sb_adds(out, ",\"delta\":{");
	stop_fields(finish, stop_seq, out);
	sb_addf(out, "},\"usage\":{\"output_tokens\":%ld}", output_tokens);
	event_end(out);
	event("message_stop", out);
	event_end(out);
}

/* Anthropic's error types by HTTP status. */
static const char *error_type(int status)
{
	switch (status) {
	case 400: return "invalid_request_error";
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 503: return "overloaded_error";
	default: return "api_error";
	}
}

void fe_msg_error(int status, const char *msg, int stream, struct strbuf *out)
{
	if (stream)
		sb_adds(out, "event: error\ndata: ");
	sb_addf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":",
		error_type(status));
	sb_add_json_str(out, msg, strlen(msg));
	sb_adds(out, "}}");
	if (stream)
		sb_adds(out, "\n\n");
}
