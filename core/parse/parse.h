/*
 * parse.h - tool calls and reasoning parsed out of a model's output text.
 *
 * The output arrives in pieces (detokenized deltas, split anywhere: a
 * marker such as "<tool_call>" may span pieces).  A parser turns it into
 * events: content text, reasoning text, and whole tool calls (name and
 * arguments as a JSON object text).  Text that could still be the start
 * of a marker is held back until decided, so markup never reaches the
 * content; reasoning and content stream as they come, a tool call is
 * given once it is complete (so a call that turns out malformed, or is
 * cut off by the end of the output, degrades to content: nothing about
 * it was sent before).  Hence the events of an output fed in any pieces
 * equal, once joined, those of the output fed whole.
 *
 * Formats (dyn-frontend(1) TOOL CALLS, REASONING):
 *   tool calls  hermes, mistral, llama3_json, pythonic, deepseek_v3,
 *               deepseek_v31, phi4, qwen3_coder, kimi_k2, glm45, gpt_oss
 *   reasoning   deepseek_r1, qwen3 (<think>..</think>), granite ("Here is
 *               my thought process:" .. "Here is my response:"), gpt_oss
 *               (harmony channels: analysis is reasoning, final content,
 *               commentary to=functions.NAME a call)
 *
 * No I/O, no global state; one parser belongs to one output.
 */
#ifndef DYN_PARSE_H
#define DYN_PARSE_H

#include <stddef.h>

enum parse_tool { PARSE_TOOL_NONE, PARSE_TOOL_HERMES, PARSE_TOOL_MISTRAL, PARSE_TOOL_LLAMA3_JSON,
		  PARSE_TOOL_PYTHONIC, PARSE_TOOL_DEEPSEEK_V3, PARSE_TOOL_DEEPSEEK_V31,
		  PARSE_TOOL_PHI4, PARSE_TOOL_QWEN3_CODER, PARSE_TOOL_KIMI_K2, PARSE_TOOL_GLM45,
		  PARSE_TOOL_GPT_OSS, PARSE_TOOL_N };
enum parse_reasoning { PARSE_RSN_NONE, PARSE_RSN_DEEPSEEK_R1, PARSE_RSN_QWEN3,
		       PARSE_RSN_GRANITE, PARSE_RSN_GPT_OSS, PARSE_RSN_N };

/* Names as the flags take them, and other names for them ("glm4.5",
 * "glm4_moe", "openai", "deepseek_v3.1"); -1 for an unknown one. */
int parse_tool_by_name(const char *name);
int parse_reasoning_by_name(const char *name);
const char *parse_tool_name(enum parse_tool t);
const char *parse_reasoning_name(enum parse_reasoning r);
/* The names, space-separated, for error messages (not thread-safe on
 * the first call). */
const char *parse_tool_names(void);
const char *parse_reasoning_names(void);

/* Is s[0..n), the text of a token the tokenizer marks special (which a
 * detokenizer skipping special tokens drops), part of the markup of tool
 * or rsn?  Such tokens must reach the parser; other special tokens (end of
 * turn, padding) are not text. */
int parse_keeps_special(enum parse_tool tool, enum parse_reasoning rsn, const char *s, size_t n);

/*
 * The formats a model's chat template writes, found by rendering it:
 * probe_tool is the template's rendering of a conversation with one
 * assistant tool call (function PARSE_PROBE_NAME, argument
 * PARSE_PROBE_ARG = "PARSE_PROBE_VALUE"), probe_gen that and its
 * generation prompt with the templates' thinking switches ("thinking"
 * on, "enable_thinking" off: both then write their markup).
 * PARSE_*_NONE when nothing matches.
 */
#define PARSE_PROBE_NAME "dyn_probe_fn"
#define PARSE_PROBE_ARG "dyn_probe_arg"
#define PARSE_PROBE_VALUE "dyn_probe_value"
enum parse_tool parse_tool_detect(const char *probe_tool);
enum parse_reasoning parse_reasoning_detect(const char *probe_gen);

/* Does the prompt end inside an open reasoning block (a template that
 * opens <think> for the model)? */
int parse_prompt_opens_reasoning(enum parse_reasoning r, const char *prompt, size_t len);

enum parse_ev_kind { PARSE_CONTENT, PARSE_REASONING, PARSE_CALL };

struct parse_ev {
	enum parse_ev_kind kind;
	char *text;			/* content / reasoning text; a call's arguments */
	size_t len;
	char *name;			/* a call's function name */
	char *id;			/* a call's id when the format gives one (kimi_k2), else NULL */
};

/* Events in order; adjacent text events of one kind are merged. */
struct parse_evs {
	struct parse_ev *v;
	size_t n, cap;
};

void parse_evs_reset(struct parse_evs *e);	/* frees the events, keeps the list */
void parse_evs_release(struct parse_evs *e);

struct parser;

/*
 * A parser for one output.  tool: the tool-call format (PARSE_TOOL_NONE:
 * no calls are parsed, as for a request without tools); tools_json: the
 * request's tools (a JSON array, or NULL), whose parameter schemas type
 * the values of the XML-style formats; rsn: the reasoning format;
 * in_reasoning: the output starts inside the reasoning block
 * (parse_prompt_opens_reasoning()).  A gpt_oss tool or reasoning format
 * reads the harmony channels for both.
 */
struct parser *parser_new(enum parse_tool tool, const char *tools_json, enum parse_reasoning rsn,
			  int in_reasoning);
void parser_free(struct parser *p);
/* Feed s[0..n); the events decided so far are appended to out. */
void parser_feed(struct parser *p, const char *s, size_t n, struct parse_evs *out);
/* The output ended: decide whatever was held back. */
void parser_finish(struct parser *p, struct parse_evs *out);

#endif
