/*
 * test_parse.c - tool-call and reasoning parsers (core/parse/parse.h).
 *
 * The references are hand-written: each case is a model output in its
 * format as the format's documentation and the model's chat template
 * write it, with the content, reasoning and calls a reader of that
 * documentation expects.  Every case is checked fed whole, split in two
 * at every byte, and fed byte by byte: the joined events must be the same
 * each time (markers split anywhere never leak into content).
 */
#include "core/frontend/internal.h"
#include "core/parse/parse.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"
#include "check.h"

/* the cases leave the fields they do not need out */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define DS(x) "<\xef\xbd\x9ctool\xe2\x96\x81" x "\xef\xbd\x9c>"
#define DS_CALLS_BEGIN DS("calls\xe2\x96\x81" "begin")
#define DS_CALLS_END DS("calls\xe2\x96\x81" "end")
#define DS_CALL_BEGIN DS("call\xe2\x96\x81" "begin")
#define DS_CALL_END DS("call\xe2\x96\x81" "end")
#define DS_SEP DS("sep")

static const char weather_tools[] =
	"[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{"
	"\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
	"\"zip\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
	"\"hourly\":{\"type\":[\"boolean\",\"null\"]},\"detail\":{\"type\":\"object\"}}}}}]";

struct want_call {
	const char *name, *args, *id;
};

struct pcase {
	enum parse_tool tool;
	enum parse_reasoning rsn;
	int in_reasoning;
	const char *out;		/* the model's output */
	const char *content, *reasoning;
	struct want_call calls[3];
};

/* The result as one comparable text: content, reasoning, then each call
 * with its arguments printed by cJSON (so that spacing does not count). */
static void describe(const struct parse_evs *e, struct strbuf *b)
{
	struct strbuf c = STRBUF_INIT, r = STRBUF_INIT, t = STRBUF_INIT;
	for (size_t i = 0; i < e->n; i++) {
		const struct parse_ev *v = &e->v[i];
		if (v->kind == PARSE_CONTENT) {
			sb_add(&c, v->text, v->len);
		} else if (v->kind == PARSE_REASONING) {
			sb_add(&r, v->text, v->len);
		} else {
			cJSON *a = cJSON_Parse(v->text);
			char *p = a ? cJSON_PrintUnformatted(a) : NULL;
			sb_addf(&t, "[%s %s id=%s]", v->name, p ? p : "INVALID JSON",
				v->id ? v->id : "-");
			cJSON_free(p);
			cJSON_Delete(a);
		}
	}
	sb_addf(b, "content=<%s> reasoning=<%s> calls=%s", c.buf, r.buf, t.buf);
	sb_release(&c);
	sb_release(&r);
	sb_release(&t);
}

static void expected(const struct pcase *k, struct strbuf *b)
{
	struct strbuf t = STRBUF_INIT;
	for (size_t i = 0; i < 3 && k->calls[i].name; i++) {
		cJSON *a = cJSON_Parse(k->calls[i].args);
		char *p = cJSON_PrintUnformatted(a);
		sb_addf(&t, "[%s %s id=%s]", k->calls[i].name, p,
			k->calls[i].id ? k->calls[i].id : "-");
		cJSON_free(p);
		cJSON_Delete(a);
	}
	sb_addf(b, "content=<%s> reasoning=<%s> calls=%s", k->content, k->reasoning, t.buf);
	sb_release(&t);
}

/* Parse out[0..n) fed in pieces cut at cuts[0..ncuts) (ascending). */
static void run_cut(const struct pcase *k, const size_t *cuts, size_t ncuts, struct strbuf *b)
{
	const char *tools = k->tool == PARSE_TOOL_NONE ? NULL : weather_tools;
	struct parser *p = parser_new(k->tool, tools, k->rsn, k->in_reasoning);
	struct parse_evs e = { 0 };
	size_t n = strlen(k->out), at = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		parser_feed(p, k->out + at, to - at, &e);
		at = to;
	}
	parser_finish(p, &e);
	describe(&e, b);
	parse_evs_release(&e);
	parser_free(p);
}

static void check_case(const struct pcase *k)
{
	struct strbuf want = STRBUF_INIT, got = STRBUF_INIT;
	expected(k, &want);
	run_cut(k, NULL, 0, &got);
	CHECK_MSG(!strcmp(got.buf, want.buf), "whole %s: got %s, want %s", k->out, got.buf,
		  want.buf);
	size_t n = strlen(k->out);
	for (size_t c = 1; c < n; c++) {
		sb_reset(&got);
		run_cut(k, &c, 1, &got);
		CHECK_MSG(!strcmp(got.buf, want.buf), "split at %zu of %s: got %s, want %s", c,
			  k->out, got.buf, want.buf);
	}
	size_t *every = malloc(n * sizeof(*every));
	for (size_t c = 0; c + 1 < n; c++)
		every[c] = c + 1;
	sb_reset(&got);
	run_cut(k, every, n ? n - 1 : 0, &got);
	CHECK_MSG(!strcmp(got.buf, want.buf), "byte by byte %s: got %s, want %s", k->out, got.buf,
		  want.buf);
	free(every);
	sb_release(&want);
	sb_release(&got);
}

static void check_cases(const struct pcase *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_case(&k[i]);
}

#define CHECK_CASES(a) check_cases(a, sizeof(a) / sizeof(a[0]))

TEST(hermes)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_HERMES, 0, 0,
		  "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
		  "{\"city\": \"Z\xc3\xbcrich\"}}\n</tool_call>\n<tool_call>\n{\"name\": "
		  "\"get_time\", \"arguments\": {}}\n</tool_call>",
		  "Let me check.", "",
		  { { "get_weather", "{\"city\":\"Z\xc3\xbcrich\"}" }, { "get_time", "{}" } } },
		{ PARSE_TOOL_HERMES, 0, 0, "No tools needed: 1 < 2.", "No tools needed: 1 < 2.",
		  "" },
		/* malformed JSON, a call cut off, a close tag alone: content */
		{ PARSE_TOOL_HERMES, 0, 0, "A <tool_call>{\"name\": bad}</tool_call> B",
		  "A <tool_call>{\"name\": bad}</tool_call> B", "" },
		{ PARSE_TOOL_HERMES, 0, 0, "Sure <tool_call>{\"name\": \"f\", \"argu",
		  "Sure <tool_call>{\"name\": \"f\", \"argu", "" },
		{ PARSE_TOOL_HERMES, 0, 0, "x </tool_call> <tool_call", "x </tool_call> <tool_call",
		  "" },
		{ PARSE_TOOL_HERMES, 0, 0, "<tool_call>{\"arguments\": {}}</tool_call>",
		  "<tool_call>{\"arguments\": {}}</tool_call>", "" },
	};
	CHECK_CASES(k);
}

TEST(mistral)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_MISTRAL, 0, 0,
		  "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
		  "\"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}]",
		  "", "",
		  { { "get_weather", "{\"city\":\"Paris\"}" },
		    { "get_time", "{\"tz\":\"CET\"}" } } },
		{ PARSE_TOOL_MISTRAL, 0, 0,
		  "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
		  "", "", { { "get_weather", "{\"city\":\"Paris\"}" }, { "get_time", "{}" } } },
		{ PARSE_TOOL_MISTRAL, 0, 0,
		  "Checking.[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{\"city\": \"Nice\"}",
		  "Checking.", "", { { "get_weather", "{\"city\":\"Nice\"}", "a1b2c3d4e" } } },
		{ PARSE_TOOL_MISTRAL, 0, 0, "[TOOL_CALLS]get weather", "[TOOL_CALLS]get weather",
		  "" },
		{ PARSE_TOOL_MISTRAL, 0, 0, "[TOOL_CALLS]f[ARGS]{\"a\": ", "[TOOL_CALLS]f[ARGS]{\"a\": ",
		  "" },
	};
	CHECK_CASES(k);
}

TEST(llama3_json)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_LLAMA3_JSON, 0, 0,
		  "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
		  "", "", { { "get_weather", "{\"city\":\"Rome\"}" } } },
		{ PARSE_TOOL_LLAMA3_JSON, 0, 0,
		  "  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}; "
		  "{\"name\": \"get_time\", \"parameters\": {}}",
		  "", "", { { "get_weather", "{\"city\":\"Rome\"}" }, { "get_time", "{}" } } },
		/* JSON that is not a call, and a brace after text: content */
		{ PARSE_TOOL_LLAMA3_JSON, 0, 0, "{\"answer\": 42}", "{\"answer\": 42}", "" },
		{ PARSE_TOOL_LLAMA3_JSON, 0, 0, "Use {\"name\": \"x\", \"parameters\": {}}",
		  "Use {\"name\": \"x\", \"parameters\": {}}", "" },
	};
	CHECK_CASES(k);
}

TEST(pythonic)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_PYTHONIC, 0, 0,
		  "[get_weather(city='San Francisco', days=3), get_time(tz=None, off=-1.5, "
		  "flags=[True, False], o={'a': (1, \"b\\\"c\")})]",
		  "", "",
		  { { "get_weather", "{\"city\":\"San Francisco\",\"days\":3}" },
		    { "get_time", "{\"tz\":null,\"off\":-1.5,\"flags\":[true,false],"
				  "\"o\":{\"a\":[1,\"b\\\"c\"]}}" } } },
		{ PARSE_TOOL_PYTHONIC, 0, 0, "<|python_start|>[get_time()]<|python_end|>", "", "",
		  { { "get_time", "{}" } } },
		/* Python's escapes: hex bytes, 4- and 8-digit code points, newline */
		{ PARSE_TOOL_PYTHONIC, 0, 0,
		  "[f(a='Z\\xfcrich', b=\"\\u00fc\\U0001F600\\n\")]", "", "",
		  { { "f", "{\"a\":\"Z\xc3\xbcrich\",\"b\":\"\xc3\xbc\xf0\x9f\x98\x80\\n\"}" } } },
		{ PARSE_TOOL_PYTHONIC, 0, 0, "[f(a='\\xZZ')]", "[f(a='\\xZZ')]", "" },
		{ PARSE_TOOL_PYTHONIC, 0, 0, "[1, 2, 3] are numbers", "[1, 2, 3] are numbers", "" },
		{ PARSE_TOOL_PYTHONIC, 0, 0, "[f(a=1", "[f(a=1", "" },
	};
	CHECK_CASES(k);
}

TEST(deepseek)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_DEEPSEEK_V3, 0, 0,
		  DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "get_weather\n```json\n"
		  "{\"city\": \"Tokyo\"}\n```" DS_CALL_END "\n" DS_CALL_BEGIN "function" DS_SEP
		  "get_time\n```json\n{}\n```" DS_CALL_END DS_CALLS_END,
		  "", "", { { "get_weather", "{\"city\":\"Tokyo\"}" }, { "get_time", "{}" } } },
		{ PARSE_TOOL_DEEPSEEK_V31, 0, 0,
		  "I'll check." DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP
		  "{\"city\": \"Tokyo\"}" DS_CALL_END DS_CALLS_END,
		  "I'll check.", "", { { "get_weather", "{\"city\":\"Tokyo\"}" } } },
		{ PARSE_TOOL_DEEPSEEK_V31, 0, 0,
		  DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": ",
		  DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": ", "" },
	};
	CHECK_CASES(k);
}

TEST(phi4)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_PHI4, 0, 0,
		  "functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
		  "", "", { { "get_weather", "{\"city\":\"Oslo\"}" } } },
		{ PARSE_TOOL_PHI4, 0, 0, "functools are useful", "functools are useful", "" },
	};
	CHECK_CASES(k);
}

TEST(qwen3_coder)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_QWEN3_CODER, 0, 0,
		  "Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n"
		  "</parameter>\n<parameter=zip>\n10001\n</parameter>\n<parameter=days>\n3\n"
		  "</parameter>\n<parameter=hourly>\ntrue\n</parameter>\n<parameter=detail>\n"
		  "{\"wind\": [1, 2]}\n</parameter>\n<parameter=note>\n2 lines\nhere\n"
		  "</parameter>\n</function>\n</tool_call>",
		  "Checking.", "",
		  { { "get_weather", "{\"city\":\"New York\",\"zip\":\"10001\",\"days\":3,"
				     "\"hourly\":true,\"detail\":{\"wind\":[1,2]},"
				     "\"note\":\"2 lines\\nhere\"}" } } },
		{ PARSE_TOOL_QWEN3_CODER, 0, 0, "<tool_call>\n<function=get_weather>\n",
		  "<tool_call>\n<function=get_weather>\n", "" },
	};
	CHECK_CASES(k);
}

TEST(kimi_k2)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_KIMI_K2, 0, 0,
		  "Let me look.<|tool_calls_section_begin|><|tool_call_begin|>"
		  "functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Beijing\"}"
		  "<|tool_call_end|><|tool_call_begin|>functions.get_time:1"
		  "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>",
		  "Let me look.", "",
		  { { "get_weather", "{\"city\":\"Beijing\"}", "functions.get_weather:0" },
		    { "get_time", "{}", "functions.get_time:1" } } },
	};
	CHECK_CASES(k);
}

TEST(glm45)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_GLM45, 0, 0,
		  "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing"
		  "</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n"
		  "<arg_key>extra</arg_key>\n<arg_value>{\"a\": 1}</arg_value>\n</tool_call>",
		  "", "", { { "get_weather", "{\"city\":\"Beijing\",\"days\":2,\"extra\":{\"a\":1}}" } } },
		{ PARSE_TOOL_GLM45, 0, 0, "<tool_call>get_time\n</tool_call>", "", "",
		  { { "get_time", "{}" } } },
		{ PARSE_TOOL_GLM45, 0, 0, "<tool_call>{\"name\": \"x\"}</tool_call>",
		  "<tool_call>{\"name\": \"x\"}</tool_call>", "" },
		/* a name with a space or a control character is no name */
		{ PARSE_TOOL_GLM45, 0, 0, "<tool_call>get weather</tool_call>",
		  "<tool_call>get weather</tool_call>", "" },
		{ PARSE_TOOL_GLM45, 0, 0, "<tool_call>get\x01</tool_call>",
		  "<tool_call>get\x01</tool_call>", "" },
	};
	CHECK_CASES(k);
}

TEST(gpt_oss)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_GPT_OSS, PARSE_RSN_GPT_OSS, 0,
		  "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant"
		  "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
		  "{\"city\":\"Lima\"}<|call|>",
		  "", "Need the weather.", { { "get_weather", "{\"city\":\"Lima\"}" } } },
		/* the recipient before the channel; the output ends without <|call|> */
		{ PARSE_TOOL_GPT_OSS, PARSE_RSN_GPT_OSS, 0,
		  "<|start|>assistant to=functions.get_time<|channel|>commentary json"
		  "<|message|>{}",
		  "", "", { { "get_time", "{}" } } },
		{ PARSE_TOOL_NONE, PARSE_RSN_GPT_OSS, 0,
		  "<|channel|>analysis<|message|>Greet.<|end|><|start|>assistant<|channel|>final"
		  "<|message|>Hello!<|return|>",
		  "Hello!", "Greet." },
		{ PARSE_TOOL_GPT_OSS, PARSE_RSN_GPT_OSS, 0,
		  "<|channel|>commentary to=functions.f<|message|>{\"a\": ",
		  "{\"a\": ", "" },
	};
	CHECK_CASES(k);
}

TEST(reasoning)
{
	static const struct pcase k[] = {
		{ PARSE_TOOL_NONE, PARSE_RSN_QWEN3, 0,
		  "<think>\nI should greet.\n</think>\n\nHello!", "\n\nHello!",
		  "\nI should greet.\n" },
		{ PARSE_TOOL_NONE, PARSE_RSN_QWEN3, 1, "I should greet.</think>Hi", "Hi",
		  "I should greet." },
		{ PARSE_TOOL_NONE, PARSE_RSN_QWEN3, 0, "Hi <think> there", "Hi <think> there", "" },
		{ PARSE_TOOL_NONE, PARSE_RSN_DEEPSEEK_R1, 1, "Still thinking <", "",
		  "Still thinking <" },
		{ PARSE_TOOL_NONE, PARSE_RSN_DEEPSEEK_R1, 1, "<think>a</think>b", "b", "a" },
		{ PARSE_TOOL_HERMES, PARSE_RSN_QWEN3, 0,
		  "<think>\nweather\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
		  "\"arguments\": {\"city\": \"Bern\"}}\n</tool_call>",
		  "", "\nweather\n", { { "get_weather", "{\"city\":\"Bern\"}" } } },
		{ PARSE_TOOL_NONE, PARSE_RSN_GRANITE, 0,
		  "Here is my thought process:\nThink.\nHere is my response:\nAnswer.",
		  "\nAnswer.", "\nThink.\n" },
		{ PARSE_TOOL_NONE, PARSE_RSN_GRANITE, 0,
		  "Here's my thought process: a Here's my response: b", " b", " a " },
		{ PARSE_TOOL_NONE, PARSE_RSN_GRANITE, 0, "Here are the results.",
		  "Here are the results.", "" },
	};
	CHECK_CASES(k);
}

TEST(names_and_detection)
{
	CHECK_INT(parse_tool_by_name("hermes"), PARSE_TOOL_HERMES);
	CHECK_INT(parse_tool_by_name("glm4.5"), PARSE_TOOL_GLM45);
	CHECK_INT(parse_tool_by_name("nope"), -1);
	CHECK_INT(parse_reasoning_by_name("deepseek_r1"), PARSE_RSN_DEEPSEEK_R1);
	CHECK_INT(parse_tool_detect("<|im_start|>assistant\n<tool_call>\n{\"name\": "
				    "\"dyn_probe_fn\"}"), PARSE_TOOL_HERMES);
	CHECK_INT(parse_tool_detect("<tool_call>\n<function=dyn_probe_fn>\n"),
		  PARSE_TOOL_QWEN3_CODER);
	CHECK_INT(parse_tool_detect("hello"), PARSE_TOOL_NONE);
	CHECK_INT(parse_reasoning_detect("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
		  PARSE_RSN_QWEN3);
	CHECK(parse_keeps_special(PARSE_TOOL_MISTRAL, PARSE_RSN_NONE, "[TOOL_CALLS]", 12));
	CHECK(!parse_keeps_special(PARSE_TOOL_MISTRAL, PARSE_RSN_NONE, "</s>", 4));
	CHECK(parse_keeps_special(PARSE_TOOL_NONE, PARSE_RSN_GPT_OSS, "<|channel|>", 11));
	CHECK(!parse_keeps_special(PARSE_TOOL_NONE, PARSE_RSN_GPT_OSS, "<|endoftext|>", 13));
	CHECK(parse_prompt_opens_reasoning(PARSE_RSN_QWEN3, "a<think>\n", strlen("a<think>\n")));
	CHECK(!parse_prompt_opens_reasoning(PARSE_RSN_QWEN3, "<think>\n\n</think>\n\n",
					     strlen("<think>\n\n</think>\n\n")));
}

/* "auto": the formats of real chat templates (../shared/templates), as
 * the models' documentation names them (dyn-frontend(1) has the table). */
TEST(auto_from_templates)
{
	static const struct { const char *file; enum parse_tool t; enum parse_reasoning r; } k[] = {
		{ "Qwen-Qwen2.5-7B-Instruct", PARSE_TOOL_HERMES, PARSE_RSN_NONE },
		{ "Qwen-Qwen3-0.6B", PARSE_TOOL_HERMES, PARSE_RSN_QWEN3 },
		{ "Qwen3-Coder", PARSE_TOOL_QWEN3_CODER, PARSE_RSN_NONE },
		{ "NousResearch-Hermes-3-Llama-3.1-8B-tool_use", PARSE_TOOL_HERMES, PARSE_RSN_NONE },
		/* writes no markup for an assistant's tool calls */
		{ "HuggingFaceTB-SmolLM3-3B", PARSE_TOOL_NONE, PARSE_RSN_QWEN3 },
		{ "meta-llama-Llama-3.1-8B-Instruct", PARSE_TOOL_LLAMA3_JSON, PARSE_RSN_NONE },
		{ "Mistral-Small-3.2-24B-Instruct-2506", PARSE_TOOL_MISTRAL, PARSE_RSN_NONE },
		{ "mistralai-Mistral-Nemo-Instruct-2407", PARSE_TOOL_MISTRAL, PARSE_RSN_NONE },
		{ "deepseek-ai-DeepSeek-V3.1", PARSE_TOOL_DEEPSEEK_V31, PARSE_RSN_QWEN3 },
		{ "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", PARSE_TOOL_DEEPSEEK_V3, PARSE_RSN_QWEN3 },
		/* calls list.append, which the sandbox refuses (as transformers') */
		{ "Kimi-K2-Instruct", PARSE_TOOL_NONE, PARSE_RSN_NONE },
		{ "moonshotai-Kimi-K2", PARSE_TOOL_KIMI_K2, PARSE_RSN_NONE },
		{ "GLM-4.6", PARSE_TOOL_GLM45, PARSE_RSN_QWEN3 },
		{ "openai-gpt-oss-120b", PARSE_TOOL_GPT_OSS, PARSE_RSN_GPT_OSS },
		{ "ibm-granite-granite-3.3-2B-Instruct", PARSE_TOOL_NONE, PARSE_RSN_QWEN3 },
		{ "google-gemma-2-2b-it", PARSE_TOOL_NONE, PARSE_RSN_NONE },
		{ "microsoft-Phi-3.5-mini-instruct", PARSE_TOOL_NONE, PARSE_RSN_NONE },
	};
	struct strbuf msg = STRBUF_INIT;
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		char path[256];
		struct strbuf src = STRBUF_INIT;
		snprintf(path, sizeof(path), "../shared/templates/%s.jinja", k[i].file);
		if (sb_read_file(&src, path, 1 << 20) < 0)
			CHECK_SKIP("no %s", path);
		struct tmpl_chat *chat;
		static const char cfg[] = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}";
		CHECK(tmpl_chat_from_config(cfg, strlen(cfg), src.buf, src.len, path, &chat) == 0);
		int t, r;
		fe_detect_parsers(chat, &t, &r);
		if (t != (int)k[i].t || r != (int)k[i].r)
			sb_addf(&msg, "%s: %s %s (want %s %s); ", k[i].file, parse_tool_name(t),
				parse_reasoning_name(r), parse_tool_name(k[i].t),
				parse_reasoning_name(k[i].r));
		tmpl_chat_free(chat);
		sb_release(&src);
	}
	CHECK_MSG(!msg.len, "%s", msg.buf);
	sb_release(&msg);
}

int main(void)
{
	return RUN_TESTS();
}
