/*
 * tmpl.h - chat templates: a Jinja2 interpreter that renders Hugging Face
 * chat templates byte for byte as transformers' apply_chat_template does.
 *
 * The dialect is Python jinja2 configured the way transformers configures
 * it: ImmutableSandboxedEnvironment (methods that mutate lists and dicts
 * are errors; namespace() attributes may be set), trim_blocks,
 * lstrip_blocks, the loopcontrols extension ({% break %}, {% continue %}),
 * the {% generation %} block (renders its body), a tojson filter that keeps
 * non-ASCII text and takes indent/separators/sort_keys, and the globals
 * raise_exception(msg) and strftime_now(fmt).  Values follow Python's
 * semantics (str() of True, None, lists and dicts; int vs float division;
 * jinja2's default Undefined).
 *
 * Rendering is bounded: a step budget (expression and statement
 * evaluations, plus one step for every 32 bytes that string and list
 * operations allocate, copy or scan, so that work on long data counts),
 * a wall-clock limit, caps on output size, memory (what values take; a
 * value built up by repeated concatenation grows in place, so memory
 * follows the data and not its history), macro call depth and C stack
 * use; going over any is an error (-E2BIG), as are template errors
 * (-EINVAL: syntax, unknown filter, raise_exception(), type errors, bad
 * JSON input).  Errors come back as a negative code with the message in
 * err_msg() (core/err.h), which names the template and line; nothing here
 * prints.  Known differences from Python: integers are 64-bit (larger JSON
 * integers are kept and printed exactly), and filters that return one-shot
 * iterators in Python (map, select, items ...) may be iterated again.
 *
 * Ownership and threads: a compiled struct tmpl is immutable and may be
 * rendered by many threads at once.  A struct tmpl_vars belongs to one
 * thread while it is built; once built it may be shared read-only.  Each
 * render allocates its own memory and frees it before returning.
 */
#ifndef DYN_TMPL_H
#define DYN_TMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct strbuf;
struct tmpl;
struct tmpl_vars;

/* ---- templates ------------------------------------------------------ */

/* Compile Jinja2 source (UTF-8).  name is used in error messages. */
int tmpl_compile(const char *src, size_t len, const char *name, struct tmpl **out);
void tmpl_free(struct tmpl *t);

/* ---- variables ------------------------------------------------------ */

struct tmpl_vars *tmpl_vars_new(void);
void tmpl_vars_free(struct tmpl_vars *v);
/* Set one variable from JSON text (any JSON value).  Integers stay ints
 * and fractions floats, as Python's json module reads them. */
int tmpl_vars_set_json(struct tmpl_vars *v, const char *name, const char *json, size_t len);
int tmpl_vars_set_str(struct tmpl_vars *v, const char *name, const char *s);
int tmpl_vars_set_bool(struct tmpl_vars *v, const char *name, bool b);
int tmpl_vars_set_none(struct tmpl_vars *v, const char *name);
/* Every member of a JSON object becomes a variable (later ones replace). */
int tmpl_vars_merge_json(struct tmpl_vars *v, const char *json_object, size_t len);
bool tmpl_vars_has(const struct tmpl_vars *v, const char *name);

/* ---- rendering ------------------------------------------------------ */

struct tmpl_limits {
	uint64_t max_steps;	/* expression + statement evaluations, and
				 * one per TMPL_WORK_BYTES_PER_STEP bytes of
				 * string/list work */
	uint64_t max_time_ms;	/* wall-clock time of one render */
	size_t max_output;	/* bytes of output, and of any captured block */
	size_t max_memory;	/* bytes a render may allocate */
	int max_call_depth;	/* nested macro calls */
	size_t max_stack;	/* bytes of C stack a render may use: keep it
				 * well below the calling thread's stack size */
};

#define TMPL_DEFAULT_MAX_STEPS		20000000ull
#define TMPL_DEFAULT_MAX_TIME_MS	10000ull
#define TMPL_WORK_BYTES_PER_STEP	32u
#define TMPL_DEFAULT_MAX_OUTPUT		(64u << 20)
#define TMPL_DEFAULT_MAX_MEMORY		(256u << 20)
#define TMPL_DEFAULT_MAX_CALL_DEPTH	200
#define TMPL_DEFAULT_MAX_STACK		(1u << 20)

struct tmpl_render_opts {
	struct tmpl_limits limits;	/* zero fields take the defaults */
	/* What strftime_now() formats (a naive local time, as Python's
	 * datetime.now()); NULL: the current local time. */
	const struct tm *now;
};

/* Render t with vars (may be NULL) and append the text to out.  On error
 * out is left as it was. */
int tmpl_render(const struct tmpl *t, const struct tmpl_vars *vars,
		const struct tmpl_render_opts *opts, struct strbuf *out);

/* Parse "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS]" (or with a space) into tm. */
int tmpl_parse_now(const char *s, struct tm *tm);

/* ---- chat templates of a model -------------------------------------- */

struct tmpl_chat;

/* Load MODEL_DIR/tokenizer_config.json (chat_template: a string or a list
 * of {name, template}; special tokens, which may be AddedToken objects)
 * and/or MODEL_DIR/chat_template.jinja (which, when present, is the
 * default template). */
int tmpl_chat_load(const char *model_dir, struct tmpl_chat **out);
/* The same from memory: config_json may be NULL, jinja_src may be NULL;
 * jinja_label names jinja_src in error messages (NULL:
 * "chat_template.jinja"). */
int tmpl_chat_from_config(const char *config_json, size_t config_len,
			  const char *jinja_src, size_t jinja_len, const char *jinja_label,
			  struct tmpl_chat **out);
void tmpl_chat_free(struct tmpl_chat *c);
/* Names of the templates ("default", "tool_use", ...), NULL-terminated. */
const char *const *tmpl_chat_names(const struct tmpl_chat *c);

struct tmpl_chat_request {
	const char *messages_json;	/* JSON array of messages (required) */
	const char *tools_json;		/* JSON array, or NULL: tools=None */
	const char *documents_json;	/* JSON array, or NULL: documents=None */
	const char *kwargs_json;	/* JSON object of extra variables, or NULL */
	bool add_generation_prompt;
	/* Leave the last (assistant) message open for the model to continue,
	 * as transformers' continue_final_message does. */
	bool continue_final_message;
	/* Which template; NULL: "tool_use" when tools are given and the model
	 * has one, else "default". */
	const char *template_name;
};

/* Render as apply_chat_template(tokenize=False) does: variables messages,
 * tools, documents, add_generation_prompt, the model's special tokens
 * (bos_token, eos_token, ...) and the kwargs (which override tokens). */
int tmpl_chat_render(const struct tmpl_chat *c, const struct tmpl_chat_request *req,
		     const struct tmpl_render_opts *opts, struct strbuf *out);

/* The same from one JSON object (an OpenAI-style chat request body):
 * "messages", "tools", "documents", "chat_template_kwargs" (or "kwargs"),
 * "add_generation_prompt" (default true), "continue_final_message" and
 * "template_name"; other members are ignored.  Numbers keep Python's
 * int/float distinction. */
int tmpl_chat_render_request(const struct tmpl_chat *c, const char *json, size_t len,
			     const struct tmpl_render_opts *opts, struct strbuf *out);

#endif
