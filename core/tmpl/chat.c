/*
 * chat.c - a model's chat templates as transformers' apply_chat_template
 * uses them: templates from tokenizer_config.json (one string, or a list
 * of named ones) and chat_template.jinja, the special tokens that become
 * template variables (special_tokens_map: bos_token, eos_token, unk_token,
 * sep_token, pad_token, cls_token, mask_token, additional_special_tokens;
 * only the set, non-empty ones), the choice of template ("tool_use" when
 * tools are given) and continue_final_message.
 */
#include "core/tmpl/internal.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (64u << 20)

struct tmpl_chat {
	size_t n;
	char **names;		/* NULL-terminated */
	struct tmpl **tmpls;
	struct tmpl_vars *tokens;
};

static void chat_add(struct tmpl_chat *c, const char *name, struct tmpl *t)
{
	for (size_t i = 0; i < c->n; i++) {
		if (!strcmp(c->names[i], name)) {
			tmpl_free(c->tmpls[i]);
			c->tmpls[i] = t;
			return;
		}
	}
	c->names = xrealloc(c->names, (c->n + 2) * sizeof(char *));
	c->tmpls = xrealloc(c->tmpls, (c->n + 1) * sizeof(struct tmpl *));
	c->names[c->n] = xstrdup(name);
	c->tmpls[c->n] = t;
	c->n++;
	c->names[c->n] = NULL;
}

void tmpl_chat_free(struct tmpl_chat *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->names[i]);
		tmpl_free(c->tmpls[i]);
	}
	free(c->names);
	free(c->tmpls);
	tmpl_vars_free(c->tokens);
	free(c);
}

const char *const *tmpl_chat_names(const struct tmpl_chat *c)
{
	static const char *const none[] = { NULL };
	return c->n ? (const char *const *)c->names : none;
}

static int add_template(struct tmpl_chat *c, const char *name, const char *src, size_t len,
			const char *label)
{
	struct tmpl *t;
	int rc = tmpl_compile(src, len, label, &t);
	if (rc < 0)
		return rc;
	chat_add(c, name, t);
	return 0;
}

/* A token: a string, or an AddedToken object {"content": ...}. */
static const char *token_text(const cJSON *v)
{
	if (cJSON_IsString(v))
		return v->valuestring;
	if (cJSON_IsObject(v)) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
		if (cJSON_IsString(c))
			return c->valuestring;
	}
	return NULL;
}

static int load_tokens(struct tmpl_chat *c, const cJSON *cfg)
{
	static const char *const attrs[] = { "bos_token", "eos_token", "unk_token", "sep_token",
					     "pad_token", "cls_token", "mask_token" };
	for (size_t i = 0; i < ARRAY_SIZE(attrs); i++) {
		const char *s = token_text(cJSON_GetObjectItemCaseSensitive(cfg, attrs[i]));
		if (s && *s) {
			int rc = tmpl_vars_set_str(c->tokens, attrs[i], s);
			if (rc < 0)
				return rc;
		}
	}
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
	if (cJSON_IsArray(extra) && cJSON_GetArraySize(extra) > 0) {
		cJSON *list = cJSON_CreateArray();
		const cJSON *it;
		cJSON_ArrayForEach(it, extra) {
			const char *s = token_text(it);
			if (s)
				cJSON_AddItemToArray(list, cJSON_CreateString(s));
		}
		char *text = cJSON_PrintUnformatted(list);
		cJSON_Delete(list);
		if (!text)
			return err_set(-ENOMEM, "out of memory");
		int rc = tmpl_vars_set_json(c->tokens, "additional_special_tokens", text, strlen(text));
		free(text);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int tmpl_chat_from_config(const char *config_json, size_t config_len,
			  const char *jinja_src, size_t jinja_len, const char *jinja_label,
			  struct tmpl_chat **out)
{
	*out = NULL;
	struct tmpl_chat *c = xcalloc(1, sizeof(*c));
	c->tokens = tmpl_vars_new();
	int rc = 0;
	if (config_json) {
		cJSON *cfg = cJSON_ParseWithLength(config_json, config_len);
		if (!cfg || !cJSON_IsObject(cfg)) {
			cJSON_Delete(cfg);
			tmpl_chat_free(c);
			return err_set(-EINVAL, "tokenizer_config.json is not a JSON object");
		}
		const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
		if (cJSON_IsString(ct)) {
			rc = add_template(c, "default", ct->valuestring, strlen(ct->valuestring),
					  "chat_template");
		} else if (cJSON_IsArray(ct)) {
			const cJSON *it;
			cJSON_ArrayForEach(it, ct) {
				const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
				const cJSON *src = cJSON_GetObjectItemCaseSensitive(it, "template");
				if (!cJSON_IsString(name) || !cJSON_IsString(src)) {
					rc = err_set(-EINVAL, "chat_template list entries need \"name\" and \"template\"");
					break;
				}
				char label[160];
				snprintf(label, sizeof(label), "chat_template '%s'", name->valuestring);
				rc = add_template(c, name->valuestring, src->valuestring,
						  strlen(src->valuestring), label);
				if (rc < 0)
					break;
			}
		} else if (ct && !cJSON_IsNull(ct)) {
			rc = err_set(-EINVAL, "chat_template must be a string or a list of templates");
		}
		if (rc == 0)
			rc = load_tokens(c, cfg);
		cJSON_Delete(cfg);
	}
	if (rc == 0 && jinja_src)
		rc = add_template(c, "default", jinja_src, jinja_len,
				  jinja_label ? jinja_label : "chat_template.jinja");
	if (rc == 0 && c->n == 0)
		rc = err_set(-ENOENT, "the model has no chat template");
	if (rc < 0) {
		tmpl_chat_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int tmpl_chat_load(const char *model_dir, struct tmpl_chat **out)
{
	struct strbuf path = STRBUF_INIT, cfg = STRBUF_INIT, jinja = STRBUF_INIT;
	bool have_cfg = false, have_jinja = false;
	int rc;

	*out = NULL;
	sb_addf(&path, "%s/tokenizer_config.json", model_dir);
	rc = sb_read_file(&cfg, path.buf, CONFIG_MAX_BYTES);
	if (rc == 0)
		have_cfg = true;
	else if (rc != -ENOENT)
		goto done;
	sb_reset(&path);
	sb_addf(&path, "%s/chat_template.jinja", model_dir);
	rc = sb_read_file(&jinja, path.buf, CONFIG_MAX_BYTES);
	if (rc == 0)
		have_jinja = true;
	else if (rc != -ENOENT)
		goto done;
	if (!have_cfg && !have_jinja) {
		rc = err_set(-ENOENT, "%s: no tokenizer_config.json or chat_template.jinja", model_dir);
		goto done;
	}
	rc = tmpl_chat_from_config(have_cfg ? cfg.buf : NULL, cfg.len,
				   have_jinja ? jinja.buf : NULL, jinja.len, NULL, out);
	if (rc < 0)
		err_wrap(rc, "%s", model_dir);
done:
	sb_release(&path);
	sb_release(&cfg);
	sb_release(&jinja);
	return rc;
}

static const struct tmpl *pick(const struct tmpl_chat *c, const struct tmpl_chat_request *req)
{
	const char *want = req->template_name;
	if (want) {
		for (size_t i = 0; i < c->n; i++)
			if (!strcmp(c->names[i], want))
				return c->tmpls[i];
		err_set(-ENOENT, "the model has no chat template named '%s'", want);
		return NULL;
	}
	if (c->n == 1 && !strcmp(c->names[0], "default"))
		return c->tmpls[0];
	if (req->tools_json)
		for (size_t i = 0; i < c->n; i++)
			if (!strcmp(c->names[i], "tool_use"))
				return c->tmpls[i];
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->names[i], "default"))
			return c->tmpls[i];
	err_set(-EINVAL, "the model has several chat templates and none is named 'default'; "
		"choose one by name");
	return NULL;
}

static bool is_py_space_byte_seq(const char *p, const char *end, size_t *len)
{
	const char *q = p;
	uint32_t c = utf8_next(&q, end);
	*len = (size_t)(q - p);
	return py_isspace(c);
}

/* str.strip()/lstrip() byte ranges for Python whitespace. */
static void py_strip(const char *s, size_t n, size_t *start, size_t *end, bool right)
{
	size_t a = 0, len;
	while (a < n && is_py_space_byte_seq(s + a, s + n, &len))
		a += len;
	size_t b = n;
	if (right) {
		size_t last = a, i = a;
		while (i < n) {
			bool sp = is_py_space_byte_seq(s + i, s + n, &len);
			i += len;
			if (!sp)
				last = i;
		}
		b = last;
	}
	*start = a;
	*end = b;
}

/* transformers' continue_final_message: cut the rendered text right after
 * the final message's content. */
static int continue_final(const struct tmpl_vars *vars, struct strbuf *text)
{
	struct tv msgs;
	if (!vars_get_value(vars, "messages", &msgs) || msgs.kind != TV_LIST || msgs.l->n == 0)
		return err_set(-EINVAL, "continue_final_message needs at least one message");
	struct tv last = msgs.l->v[msgs.l->n - 1], content;
	if (last.kind != TV_DICT || !tv_dict_gets(last.d, "content", &content))
		return err_set(-EINVAL, "continue_final_message: the final message has no content");
	if (content.kind == TV_LIST) {
		bool found = false;
		for (size_t i = content.l->n; i-- > 0;) {
			struct tv block = content.l->v[i], t;
			if (block.kind == TV_DICT && tv_dict_gets(block.d, "text", &t)) {
				content = t;
				found = true;
				break;
			}
		}
		if (!found)
			return err_set(-EINVAL, "continue_final_message is set but we could not find any "
				       "text to continue in the final message!");
	}
	if (content.kind != TV_STR)
		return err_set(-EINVAL, "continue_final_message: the final message's content is not text");
	const char *m = content.s.p;
	size_t mn = content.s.n, s0, s1, l0, l1;
	py_strip(m, mn, &s0, &s1, true);
	py_strip(m, mn, &l0, &l1, false);
	size_t stripped_n = s1 - s0, lstripped_n = l1 - l0;
	/* rindex of the stripped message */
	const char *hit = NULL;
	if (stripped_n <= text->len) {
		for (size_t i = text->len - stripped_n + 1; i-- > 0;) {
			if (!memcmp(text->buf + i, m + s0, stripped_n)) {
				hit = text->buf + i;
				break;
			}
		}
	}
	if (!hit)
		return err_set(-EINVAL, "continue_final_message is set but the final message does not "
			       "appear in the chat after applying the chat template");
	size_t loc = (size_t)(hit - text->buf);
	size_t keep;
	if (loc + lstripped_n <= text->len && lstripped_n == mn &&
	    !memcmp(text->buf + loc, m, mn))
		keep = loc + lstripped_n;
	else
		keep = loc + stripped_n;
	sb_setlen(text, keep);
	return 0;
}

/* The render shared by both entry points; the values live in v's arena
 * (or outlive v).  kwargs may be NULL. */
static int render_values(const struct tmpl_chat *c, struct tmpl_vars *v, struct tv messages,
			 struct tv tools, struct tv documents, const struct tdict *kwargs,
			 bool add_generation_prompt, bool continue_final_message,
			 const char *template_name, const struct tmpl_render_opts *opts,
			 struct strbuf *out)
{
	if (messages.kind != TV_LIST)
		return err_set(-EINVAL, "messages must be a JSON array");
	if (continue_final_message && add_generation_prompt)
		return err_set(-EINVAL, "continue_final_message and add_generation_prompt are not "
			       "compatible; use continue_final_message when the final message is an "
			       "assistant prefill");
	struct tmpl_chat_request pick_req = { .template_name = template_name };
	pick_req.tools_json = tools.kind != TV_NONE ? "" : NULL;
	const struct tmpl *t = pick(c, &pick_req);
	if (!t)
		return -EINVAL;

	/* special tokens, then the caller's kwargs over them */
	for (size_t i = 0; i < c->tokens->n; i++)
		vars_put_value(v, c->tokens->names[i], c->tokens->vals[i]);
	if (kwargs) {
		static const char *const reserved[] = { "messages", "tools", "documents",
							"add_generation_prompt" };
		for (size_t i = 0; i < kwargs->n; i++) {
			struct tv k = kwargs->k[i];
			for (size_t j = 0; j < ARRAY_SIZE(reserved); j++)
				if (k.s.n == strlen(reserved[j]) && !memcmp(k.s.p, reserved[j], k.s.n))
					return err_set(-EINVAL, "chat template kwargs: '%s' cannot be "
						       "passed as a keyword", reserved[j]);
			char name[256];
			if (k.s.n >= sizeof(name))
				return err_set(-EINVAL, "chat template kwargs: name too long");
			memcpy(name, k.s.p, k.s.n);
			name[k.s.n] = '\0';
			vars_put_value(v, name, kwargs->v[i]);
		}
	}
	vars_put_value(v, "messages", messages);
	vars_put_value(v, "tools", tools);
	vars_put_value(v, "documents", documents);
	vars_put_value(v, "add_generation_prompt", tv_bool(add_generation_prompt));

	struct strbuf text = STRBUF_INIT;
	int rc = tmpl_render(t, v, opts, &text);
	if (rc == 0 && continue_final_message)
		rc = continue_final(v, &text);
	if (rc == 0)
		sb_add(out, text.buf, text.len);
	sb_release(&text);
	return rc;
}

static int parse_into(struct tmpl_vars *v, const char *what, const char *json, struct tv *out)
{
	char err[200];
	if (!json) {
		*out = tv_none();
		return 0;
	}
	if (json_to_tv(&v->ar, json, strlen(json), out, err, sizeof(err)) < 0)
		return err_set(-EINVAL, "%s: %s", what, err);
	return 0;
}

int tmpl_chat_render(const struct tmpl_chat *c, const struct tmpl_chat_request *req,
		     const struct tmpl_render_opts *opts, struct strbuf *out)
{
	if (!req->messages_json)
		return err_set(-EINVAL, "no messages");
	struct tmpl_vars *v = tmpl_vars_new();
	struct tv messages, tools, documents, kwargs = { .kind = TV_NONE };
	int rc = parse_into(v, "messages", req->messages_json, &messages);
	if (rc == 0)
		rc = parse_into(v, "tools", req->tools_json, &tools);
	if (rc == 0)
		rc = parse_into(v, "documents", req->documents_json, &documents);
	if (rc == 0)
		rc = parse_into(v, "kwargs", req->kwargs_json, &kwargs);
	if (rc == 0 && kwargs.kind != TV_NONE && kwargs.kind != TV_DICT)
		rc = err_set(-EINVAL, "kwargs must be a JSON object");
	if (rc == 0)
		rc = render_values(c, v, messages, tools, documents,
				   kwargs.kind == TV_DICT ? kwargs.d : NULL, req->add_generation_prompt,
				   req->continue_final_message, req->template_name, opts, out);
	tmpl_vars_free(v);
	return rc;
}

static bool member(const struct tdict *d, const char *name, struct tv *out)
{
	return tv_dict_gets(d, name, out) && out->kind != TV_NONE;
}

int tmpl_chat_render_request(const struct tmpl_chat *c, const char *json, size_t len,
			     const struct tmpl_render_opts *opts, struct strbuf *out)
{
	struct tmpl_vars *v = tmpl_vars_new();
	struct tv req, messages, tools, documents, kwargs, flag, name;
	char err[200];
	const char *template_name = NULL;
	bool agp = true, cfm = false;
	int rc = 0;
	if (json_to_tv(&v->ar, json, len, &req, err, sizeof(err)) < 0) {
		rc = err_set(-EINVAL, "request: %s", err);
		goto done;
	}
	if (req.kind != TV_DICT) {
		rc = err_set(-EINVAL, "request: expected a JSON object");
		goto done;
	}
	if (!member(req.d, "messages", &messages)) {
		rc = err_set(-EINVAL, "request: no messages");
		goto done;
	}
	if (!member(req.d, "tools", &tools))
		tools = tv_none();
	if (!member(req.d, "documents", &documents))
		documents = tv_none();
	if (!member(req.d, "chat_template_kwargs", &kwargs) && !member(req.d, "kwargs", &kwargs))
		kwargs = tv_none();
	if (kwargs.kind != TV_NONE && kwargs.kind != TV_DICT) {
		rc = err_set(-EINVAL, "request: chat_template_kwargs must be an object");
		goto done;
	}
	if (member(req.d, "add_generation_prompt", &flag))
		agp = tv_truthy(flag);
	if (member(req.d, "continue_final_message", &flag))
		cfm = tv_truthy(flag);
	if (member(req.d, "template_name", &name)) {
		if (name.kind != TV_STR) {
			rc = err_set(-EINVAL, "request: template_name must be a string");
			goto done;
		}
		template_name = ar_strndup(&v->ar, name.s.p, name.s.n);
	}
	rc = render_values(c, v, messages, tools, documents, kwargs.kind == TV_DICT ? kwargs.d : NULL,
			   agp, cfm, template_name, opts, out);
done:
	tmpl_vars_free(v);
	return rc;
}
