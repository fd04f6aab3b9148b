/*
 * test_frontend.c - the frontend's pure parts: stop strings over streamed
 * text, the generate protocol round trip, Prometheus histograms, request
 * validation (the fields OpenAI's API reference defines), what of a
 * chat request reaches the chat template, OpenAI's response shapes
 * (oai.h: expected JSON written out from OpenAI's API reference, the
 * openai SDK's types ChatCompletionChunk, Completion, CompletionUsage,
 * ChatCompletionTokenLogprob), and the request's state machine
 * (call_sm.h), and logprob entries lined up with the detokenized text
 * (logprobs.h, with the stories260K tokenizer from ../shared/models).
 */
#include "check.h"
#include "core/err.h"
#include "core/frontend/call_sm.h"
#include "core/frontend/internal.h"
#include "core/frontend/logprobs.h"
#include "core/frontend/oai.h"
#include "core/frontend/stop.h"
#include "core/metrics.h"
#include "core/proto/generate.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/http.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* Feed text in pieces of `step` bytes as a stream would; return what
 * would be sent, and whether a stop hit. */
static void run_stream(const char *const *stops, size_t n, const char *text, size_t step,
		       struct strbuf *sent, int *hit)
{
	struct strbuf pending = STRBUF_INIT;
	size_t len = strlen(text);
	*hit = 0;
	for (size_t i = 0; i < len && !*hit; i += step) {
		sb_add(&pending, text + i, len - i < step ? len - i : step);
		size_t k = stop_scan(stops, n, pending.buf, pending.len, hit);
		sb_add(sent, pending.buf, k);
		sb_remove(&pending, 0, k);
	}
	if (!*hit)
		sb_add(sent, pending.buf, pending.len);
	sb_release(&pending);
}

TEST(stop_strings_across_pieces)
{
	const char *stops[] = { "world", "xyz" };
	const char *text = "hello wonderful world, and more";
	for (size_t step = 1; step <= 8; step++) {
		struct strbuf sent = STRBUF_INIT;
		int hit;
		run_stream(stops, 2, text, step, &sent, &hit);
		CHECK(hit);
		CHECK_STR(sent.buf, "hello wonderful ");
		sb_release(&sent);
	}
}

TEST(stop_strings_hold_back_only_prefixes)
{
	const char *stops[] = { "abc" };
	int hit;
	CHECK(stop_scan(stops, 1, "xxab", 4, &hit) == 2 && !hit);
	CHECK(stop_scan(stops, 1, "xxa", 3, &hit) == 2 && !hit);
	CHECK(stop_scan(stops, 1, "xxq", 3, &hit) == 3 && !hit);
	CHECK(stop_scan(stops, 1, "abc", 3, &hit) == 0 && hit);
	CHECK(stop_scan(NULL, 0, "abc", 3, &hit) == 3 && !hit);
}

TEST(stop_strings_earliest_wins)
{
	const char *stops[] = { "later", "ear" };
	int hit;
	CHECK(stop_scan(stops, 2, "the early bird, later", 21, &hit) == 4 && hit == 3);
}

TEST(generate_protocol_round_trip)
{
	struct gen_request r, back;
	int32_t ids[] = { 1, 22, 333 }, stop_ids[] = { 2 };
	struct strbuf sb = STRBUF_INIT;

	gen_request_init(&r);
	r.token_ids = ids;
	r.n_tokens = 3;
	r.s.temperature = 0.5;
	r.s.top_k = 7;
	r.s.has_seed = 1;
	r.s.seed = 42;
	r.max_tokens = 9;
	r.stop_token_ids = stop_ids;
	r.n_stop_ids = 1;
	r.logprobs = 3;
	int32_t bias_ids[] = { 7, 300 };
	double bias[] = { -100, 2.5 };
	r.s.bias_ids = bias_ids;
	r.s.bias = bias;
	r.s.n_bias = 2;
	gen_request_encode(&r, &sb);
	CHECK(gen_request_parse(sb.buf, sb.len, &back) == 0);
	CHECK(back.n_tokens == 3 && back.token_ids[2] == 333);
	CHECK(back.s.temperature == 0.5 && back.s.top_k == 7 && back.s.seed == 42);
	CHECK(isnan(back.s.top_p) && back.max_tokens == 9 && back.logprobs == 3);
	CHECK(back.n_stop_ids == 1 && back.stop_token_ids[0] == 2);
	CHECK(back.s.n_bias == 2 && back.s.bias_ids[0] == 7 && back.s.bias[0] == -100 &&
	      back.s.bias_ids[1] == 300 && back.s.bias[1] == 2.5);
	gen_request_release(&back);
	static const char one[] = "{\"token_ids\":[1],\"sampling\":{\"logit_bias\":[[1]]}}";
	CHECK(gen_request_parse(one, strlen(one), &back) < 0);
	CHECK(gen_request_parse("{\"token_ids\":[1,-2]}", 20, &back) < 0);
	CHECK(gen_request_parse("[]", 2, &back) < 0);

	struct gen_output o;
	struct gen_logprob lp = { .logprob = -0.5, .ntop = 1, .top_ids = { 5 }, .top_lps = { -0.5 } };
	int32_t id = 5;
	sb_reset(&sb);
	gen_output_encode(&sb, &id, 1, &lp, "length", 3, 1, -1);
	CHECK(gen_output_parse(sb.buf, sb.len, &o) == 0);
	CHECK(o.n == 1 && o.token_ids[0] == 5 && o.lps[0].logprob == -0.5 &&
	      o.lps[0].top_ids[0] == 5);
	CHECK_STR(o.finish_reason, "length");
	CHECK(o.prompt_tokens == 3 && o.completion_tokens == 1);
	gen_output_release(&o);
	struct gen_logprob plps[2] = { { .logprob = -1.5, .rank = 3, .ntop = 1, .top_ids = { 9 },
					 .top_lps = { -0.25 } },
				       { .logprob = -0.5, .rank = 1 } };
	sb_reset(&sb);
	gen_output_encode_prompt(&sb, plps, 2);
	CHECK(gen_output_parse(sb.buf, sb.len, &o) == 0);
	CHECK(o.n == 0 && o.n_plps == 2 && o.plps[0].logprob == -1.5 && o.plps[0].rank == 3 &&
	      o.plps[0].ntop == 1 && o.plps[0].top_ids[0] == 9 && o.plps[0].top_lps[0] == -0.25 &&
	      o.plps[1].rank == 1 && o.plps[1].ntop == 0 && !o.finish_reason[0]);
	gen_output_release(&o);
	sb_release(&sb);
}

TEST(histogram_text)
{
	static const double b[] = { 0.1, 1 };
	struct metrics_hist h;
	struct strbuf out = STRBUF_INIT, l = STRBUF_INIT;
	metrics_hist_init(&h, b, 2);
	metrics_hist_observe(&h, 0.05);
	metrics_hist_observe(&h, 0.5);
	metrics_hist_observe(&h, 5);
	metrics_label(&l, "model", "a\"b");
	metrics_hist_write(&out, "x", l.buf, &h);
	CHECK(strstr(out.buf, "x_bucket{model=\"a\\\"b\",le=\"0.1\"} 1\n"));
	CHECK(strstr(out.buf, "x_bucket{model=\"a\\\"b\",le=\"1\"} 2\n"));
	CHECK(strstr(out.buf, "x_bucket{model=\"a\\\"b\",le=\"+Inf\"} 3\n"));
	CHECK(strstr(out.buf, "x_count{model=\"a\\\"b\"} 3\n"));
	sb_release(&out);
	sb_release(&l);
}

static int parse(enum fe_kind kind, const char *body, const char **param)
{
	struct fe_params p;
	int rc = fe_params_parse(kind, body, strlen(body), &p, param);
	if (rc == 0)
		fe_params_release(&p);
	return rc;
}

TEST(empty_prompt_lists_are_refused)
{
	const char *param;
	CHECK(parse(FE_COMPLETION, "{\"model\":\"m\",\"prompt\":[]}", &param) < 0);
	CHECK_STR(param, "prompt");
	CHECK(parse(FE_COMPLETION, "{\"model\":\"m\",\"prompt\":[[]]}", &param) < 0);
	CHECK_STR(param, "prompt");
	CHECK(parse(FE_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",[]]}", &param) < 0);
	CHECK_STR(param, "prompt");
	CHECK(parse(FE_COMPLETION, "{\"model\":\"m\",\"prompt\":\"\"}", &param) == 0);
	CHECK(parse(FE_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2]}", &param) == 0);
}

TEST(tool_choice_and_kwargs_reach_the_template)
{
	struct fe_params p;
	const char *param;
	const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		"\"tools\":[{\"type\":\"function\"}],\"tool_choice\":\"auto\","
		"\"chat_template_kwargs\":{\"enable_thinking\":false}}";
	CHECK(fe_params_parse(FE_CHAT, body, strlen(body), &p, &param) == 0);
	CHECK_STR(p.template_json, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		  "\"tools\":[{\"type\":\"function\"}],\"chat_template_kwargs\":"
		  "{\"enable_thinking\":false,\"tool_choice\":\"auto\"}}");
	fe_params_release(&p);
	CHECK(parse(FE_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
		    "\"tool_choice\":3}", &param) < 0);
	CHECK_STR(param, "tool_choice");
}

/* What a template sees of a chat request: a template that prints the
 * variables (expected text: jinja2's rendering of the same source). */
static void render_seen(const char *body, struct strbuf *out)
{
	static const char src[] =
		"{{ add_generation_prompt }}|{{ documents | tojson }}|"
		"{% for m in messages %}{{ m.content }};{% endfor %}";
	struct tmpl_chat *chat;
	struct fe_params p;
	const char *param;
	sb_reset(out);
	CHECK(tmpl_chat_from_config(NULL, 0, src, sizeof(src) - 1, "t", &chat) == 0);
	CHECK(fe_params_parse(FE_CHAT, body, strlen(body), &p, &param) == 0);
	if (p.template_json)
		CHECK(tmpl_chat_render_request(chat, p.template_json, strlen(p.template_json),
					       NULL, out) == 0);
	fe_params_release(&p);
	tmpl_chat_free(chat);
}

TEST(documents_and_generation_prompt_reach_the_template)
{
	struct strbuf out = STRBUF_INIT;
	const char *param;
#define MSGS "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}," \
	"{\"role\":\"assistant\",\"content\":\"Once\"}]"
	render_seen(MSGS "}", &out);
	CHECK_STR(out.buf, "True|null|hi;Once;");
	render_seen(MSGS ",\"add_generation_prompt\":false,\"documents\":[{\"text\":\"é\","
		    "\"id\":1}]}", &out);
	CHECK_STR(out.buf, "False|[{\"text\": \"é\", \"id\": 1}]|hi;Once;");
	/* continuing the final message: the render stops after its text, and
	 * add_generation_prompt is false unless the request says otherwise */
	render_seen(MSGS ",\"continue_final_message\":true}", &out);
	CHECK_STR(out.buf, "False|null|hi;Once");
	render_seen(MSGS ",\"continue_final_message\":false,\"add_generation_prompt\":true}",
		    &out);
	CHECK_STR(out.buf, "True|null|hi;Once;");
	sb_release(&out);

	CHECK(parse(FE_CHAT, MSGS ",\"continue_final_message\":true,"
		    "\"add_generation_prompt\":true}", &param) < 0);
	CHECK_STR(param, "continue_final_message");
	CHECK(parse(FE_CHAT, MSGS ",\"continue_final_message\":1}", &param) < 0);
	CHECK_STR(param, "continue_final_message");
	CHECK(parse(FE_CHAT, MSGS ",\"add_generation_prompt\":\"no\"}", &param) < 0);
	CHECK_STR(param, "add_generation_prompt");
	CHECK(parse(FE_CHAT, MSGS ",\"documents\":{}}", &param) < 0);
	CHECK_STR(param, "documents");
	CHECK(parse(FE_CHAT, MSGS ",\"documents\":[{},\"x\"]}", &param) < 0);
	CHECK_STR(param, "documents");
	CHECK(parse(FE_CHAT, MSGS ",\"documents\":null,\"add_generation_prompt\":null}",
		    &param) == 0);
#undef MSGS
}

/* ---- OpenAI's response shapes ---- */

/* The expected bodies are longer than CHECK_STR's message: the message
 * shows what came. */
#define CHECK_JSON(got, want) CHECK_MSG(!strcmp((got), (want)), "got %s", (got))
#define FP "\"system_fingerprint\":\"dyn-" DYN_VERSION "\""

TEST(oai_chat_stream_chunks_as_documented)
{
	const struct oai_head h = { OAI_CHAT, "chatcmpl-1", 1700000000, "m/x", 1 };
	struct oai_logprobs lp;
	struct strbuf b = STRBUF_INIT, top = STRBUF_INIT;
	oai_logprobs_init(&lp, OAI_CHAT, 1);

	oai_sse_role(&h, 0, &b);
	CHECK_JSON(b.buf, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
		  "\"created\":1700000000,\"model\":\"m/x\"," FP ",\"choices\":[{\"index\":0,"
		  "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
		  "\"finish_reason\":null}],\"usage\":null}\n\n");

	oai_top_add(OAI_CHAT, &top, " a", 2, -0.25);
	oai_top_add(OAI_CHAT, &top, "\"", 1, -2);
	oai_logprobs_add(&lp, " a", 2, -0.25, &top, 0);
	sb_reset(&b);
	oai_sse_text(&h, 0, " a", 2, &lp, &b);
	CHECK_JSON(b.buf, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
		  "\"created\":1700000000,\"model\":\"m/x\"," FP ",\"choices\":[{\"index\":0,"
		  "\"delta\":{\"content\":\" a\"},\"logprobs\":{\"content\":[{\"token\":\" a\","
		  "\"logprob\":-0.25,\"bytes\":[32,97],\"top_logprobs\":[{\"token\":\" a\","
		  "\"logprob\":-0.25,\"bytes\":[32,97]},{\"token\":\"\\\"\",\"logprob\":-2,"
		  "\"bytes\":[34]}]}]},\"finish_reason\":null}],\"usage\":null}\n\n");
	CHECK(lp.n == 0);	/* written: gathered anew */

	sb_reset(&b);
	oai_sse_finish(&h, 0, "length", &lp, &b);
	CHECK_JSON(b.buf, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
		  "\"created\":1700000000,\"model\":\"m/x\"," FP ",\"choices\":[{\"index\":0,"
		  "\"delta\":{},\"logprobs\":{\"content\":[]},\"finish_reason\":\"length\"}],"
		  "\"usage\":null}\n\n");

	const struct oai_usage u = { 5, 2, 3 };
	sb_reset(&b);
	oai_sse_usage(&h, &u, &b);
	CHECK_JSON(b.buf, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
		  "\"created\":1700000000,\"model\":\"m/x\"," FP ",\"choices\":[],\"usage\":{"
		  "\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7,"
		  "\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n");
	oai_logprobs_release(&lp);
	sb_release(&top);
	sb_release(&b);
}

TEST(oai_completion_body_as_documented)
{
	const struct oai_head h = { OAI_COMPLETION, "cmpl-2", 7, "m", 0 };
	struct oai_logprobs lp;
	struct strbuf b = STRBUF_INIT, top = STRBUF_INIT, choices = STRBUF_INIT;
	oai_logprobs_init(&lp, OAI_COMPLETION, 1);

	/* "héllo" in two tokens, the second after 2 characters */
	oai_top_add(OAI_COMPLETION, &top, "h\xc3\xa9", 3, -0.5);
	oai_logprobs_add(&lp, "h\xc3\xa9", 3, -0.5, &top, 0);
	sb_reset(&top);
	oai_top_add(OAI_COMPLETION, &top, "llo", 3, -1);
	oai_top_add(OAI_COMPLETION, &top, "lp", 2, -3.5);
	oai_logprobs_add(&lp, "llo", 3, -1, &top, 2);
	oai_choice(OAI_COMPLETION, 0, "h\xc3\xa9llo", 6, NULL, &lp, "stop", &choices);
	oai_choice(OAI_COMPLETION, 1, "", 0, NULL, &lp, "length", &choices);
	const struct oai_usage u = { 4, 2, 0 };
	oai_body(&h, &choices, &u, &b);
	CHECK_JSON(b.buf, "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"created\":7,"
		  "\"model\":\"m\"," FP ",\"choices\":[{\"index\":0,\"text\":\"h\xc3\xa9llo\","
		  "\"logprobs\":{\"tokens\":[\"h\xc3\xa9\",\"llo\"],\"token_logprobs\":[-0.5,-1],"
		  "\"top_logprobs\":[{\"h\xc3\xa9\":-0.5},{\"llo\":-1,\"lp\":-3.5}],"
		  "\"text_offset\":[0,2]},\"finish_reason\":\"stop\"},{\"index\":1,\"text\":\"\","
		  "\"logprobs\":{\"tokens\":[],\"token_logprobs\":[],\"top_logprobs\":[],"
		  "\"text_offset\":[]},\"finish_reason\":\"length\"}],\"usage\":{"
		  "\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6,"
		  "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
	oai_logprobs_release(&lp);
	sb_release(&top);
	sb_release(&choices);
	sb_release(&b);
}

TEST(oai_chat_body_without_logprobs)
{
	const struct oai_head h = { OAI_CHAT, "chatcmpl-3", 1, "m", 0 };
	struct oai_logprobs lp;
	struct strbuf b = STRBUF_INIT, choices = STRBUF_INIT;
	oai_logprobs_init(&lp, OAI_CHAT, 0);
	oai_choice(OAI_CHAT, 0, "Hi \"you\"\n", 9, NULL, &lp, "stop", &choices);
	const struct oai_usage u = { 3, 4, 0 };
	oai_body(&h, &choices, &u, &b);
	CHECK_JSON(b.buf, "{\"id\":\"chatcmpl-3\",\"object\":\"chat.completion\",\"created\":1,"
		  "\"model\":\"m\"," FP ",\"choices\":[{\"index\":0,\"message\":{\"role\":"
		  "\"assistant\",\"content\":\"Hi \\\"you\\\"\\n\"},\"logprobs\":null,"
		  "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
		  "\"completion_tokens\":4,\"total_tokens\":7,\"prompt_tokens_details\":{"
		  "\"cached_tokens\":0}}}");
	oai_logprobs_release(&lp);
	sb_release(&choices);
	sb_release(&b);
}

/* Tool calls and reasoning as OpenAI's API reference shows them: a message
 * with calls and no text has content null; a streamed call is a delta
 * with index, id, type, name and arguments "", then one with arguments. */
TEST(oai_tool_calls_and_reasoning_as_documented)
{
	const struct oai_head h = { OAI_CHAT, "chatcmpl-4", 2, "m", 0 };
	struct oai_logprobs lp;
	struct strbuf b = STRBUF_INIT, choices = STRBUF_INIT, calls = STRBUF_INIT;
	struct strbuf rsn = STRBUF_INIT;
	oai_logprobs_init(&lp, OAI_CHAT, 0);
	oai_tool_call("call_abc", "get_weather", "{\"city\":\"Bern\"}", &calls);
	sb_adds(&rsn, "Think.");
	const struct oai_parsed x = { 1, &rsn, &calls };
	oai_choice(OAI_CHAT, 0, "", 0, &x, &lp, "tool_calls", &choices);
	CHECK_JSON(choices.buf, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
		  "\"reasoning_content\":\"Think.\",\"reasoning\":\"Think.\",\"tool_calls\":[{"
		  "\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
		  "\"arguments\":\"{\\\"city\\\":\\\"Bern\\\"}\"}}]},\"logprobs\":null,"
		  "\"finish_reason\":\"tool_calls\"}");
	/* a reasoning parser that found none: null; no calls: no list */
	sb_reset(&choices);
	sb_reset(&rsn);
	sb_reset(&calls);
	oai_choice(OAI_CHAT, 0, "Hi", 2, &x, &lp, "stop", &choices);
	CHECK_JSON(choices.buf, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\","
		  "\"reasoning_content\":null,\"reasoning\":null},\"logprobs\":null,"
		  "\"finish_reason\":\"stop\"}");
	oai_sse_tool_call(&h, 0, 1, "call_x", "f", "{}", &b);
	const char *second = strstr(b.buf, "\n\ndata: ");
	CHECK(second != NULL);
	char *first = xstrndup(b.buf, (size_t)(second - b.buf) + 2);
	CHECK_JSON(first, "data: {\"id\":\"chatcmpl-4\",\"object\":\"chat.completion.chunk\","
		  "\"created\":2,\"model\":\"m\"," FP ",\"choices\":[{\"index\":0,\"delta\":{"
		  "\"tool_calls\":[{\"index\":1,\"id\":\"call_x\",\"type\":\"function\",\"function\":{"
		  "\"name\":\"f\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
	CHECK_JSON(second + 2, "data: {\"id\":\"chatcmpl-4\",\"object\":\"chat.completion.chunk\","
		  "\"created\":2,\"model\":\"m\"," FP ",\"choices\":[{\"index\":0,\"delta\":{"
		  "\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]},"
		  "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
	free(first);
	sb_reset(&b);
	oai_sse_reasoning(&h, 0, "a\"b", 3, &lp, &b);
	CHECK_JSON(b.buf, "data: {\"id\":\"chatcmpl-4\",\"object\":\"chat.completion.chunk\","
		  "\"created\":2,\"model\":\"m\"," FP ",\"choices\":[{\"index\":0,\"delta\":{"
		  "\"reasoning_content\":\"a\\\"b\",\"reasoning\":\"a\\\"b\"},\"logprobs\":null,"
		  "\"finish_reason\":null}]}\n\n");
	oai_logprobs_release(&lp);
	sb_release(&choices);
	sb_release(&calls);
	sb_release(&rsn);
	sb_release(&b);
}

/* A token that ends inside a character reads "bytes:\xNN" (a literal
 * backslash in the JSON string); its bytes are the raw ones. */
TEST(oai_partial_character_tokens)
{
	struct oai_logprobs lp;
	struct strbuf b = STRBUF_INIT, top = STRBUF_INIT;
	oai_logprobs_init(&lp, OAI_CHAT, 1);
	oai_logprobs_add(&lp, "\xe2\x80", 2, -1.5, &top, 0);
	oai_logprobs_json(&lp, &b);
	CHECK_JSON(b.buf, "{\"content\":[{\"token\":\"bytes:\\\\xe2\\\\x80\",\"logprob\":-1.5,"
		  "\"bytes\":[226,128],\"top_logprobs\":[]}]}");
	oai_logprobs_release(&lp);
	oai_logprobs_init(&lp, OAI_COMPLETION, 1);
	sb_reset(&b);
	oai_logprobs_add(&lp, "\x99", 1, -0.125, &top, 3);
	oai_logprobs_json(&lp, &b);
	CHECK_JSON(b.buf, "{\"tokens\":[\"bytes:\\\\x99\"],\"token_logprobs\":[-0.125],"
		  "\"top_logprobs\":[{}],\"text_offset\":[3]}");
	CHECK(oai_utf8_chars("h\xc3\xa9\xe2\x82\xac!", 7) == 4);
	oai_logprobs_release(&lp);
	sb_release(&top);
	sb_release(&b);
}

TEST(oai_errors_as_documented)
{
	/* OpenAI's error object: code is a string naming the error or null
	 * (openai-python's types: ErrorObject.code Optional[str]). */
	struct strbuf b = STRBUF_INIT;
	http_error_json(404, "The model 'x' does not exist", "model", "model_not_found", &b);
	CHECK_JSON(b.buf, "{\"error\":{\"message\":\"The model 'x' does not exist\","
		  "\"type\":\"not_found_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");
	sb_reset(&b);
	http_error_json(503, "no worker", NULL, NULL, &b);
	CHECK_JSON(b.buf, "{\"error\":{\"message\":\"no worker\",\"type\":\"service_unavailable\","
		  "\"param\":null,\"code\":null}}");
	sb_reset(&b);
	oai_sse_error(400, "too long", "prompt", &b);
	CHECK_JSON(b.buf, "data: {\"error\":{\"message\":\"too long\",\"type\":"
		  "\"invalid_request_error\",\"param\":\"prompt\",\"code\":null}}\n\n"
		  "data: [DONE]\n\n");
	sb_release(&b);
}

/* ---- logprob entries lined up with the text ---- */

/* Stream text's tokens after a BOS as a worker's frames would come, with
 * logprobs (each token its own only alternative); *out gets the chat
 * logprobs object of all entries, *text the detokenized text. */
static void lp_stream(const struct tok *tok, enum oai_api api, const char *text,
		      struct strbuf *out, struct strbuf *shown)
{
	struct tok_ids ids = TOK_IDS_INIT;
	struct fe_lp a;
	const int32_t prompt[1] = { 1 };
	struct tok_stream *st = tok_stream_new(tok, 1);
	CHECK(tok_encode(tok, text, strlen(text), 0, &ids) == 0);
	tok_stream_prime(st, prompt, 1);
	fe_lp_init(&a, tok, api, 1);
	fe_lp_begin(&a, prompt, 1, 0);
	for (size_t i = 0; i < ids.n; i++) {
		struct gen_logprob lp = { -(double)(i + 1), { ids.v[i] }, { -(double)(i + 1) }, 1, 0 };
		size_t before = shown->len;
		tok_stream_put(st, ids.v[i], shown);
		fe_lp_token(&a, ids.v[i], &lp, shown->buf + before, shown->len - before);
	}
	size_t before = shown->len;
	tok_stream_flush(st, shown);
	fe_lp_end(&a, shown->buf + before, shown->len - before);
	oai_logprobs_json(&a.out, out);
	fe_lp_release(&a);
	tok_stream_free(st);
	tok_ids_release(&ids);
}

static struct tok *stories_tok(void)
{
	struct tok *tok = NULL;
	const char *path = "../shared/models/stories260K/tokenizer.json";
	CHECK_MSG(access(path, R_OK) == 0, "fixture %s is missing", path);
	CHECK_MSG(tok_load(path, &tok) == 0, "%s", err_msg());
	return tok;
}

/* The entries' bytes join to exactly the text the client sees, a
 * character split over byte-fallback pieces included (each piece then
 * reads "bytes:\xNN"). */
TEST(logprob_entries_carry_the_text_bytes)
{
	struct tok *tok = stories_tok();
	/* U+65E5 is not in the 512-token vocabulary: three byte pieces */
	static const char text[] = "Once upon a time \xe6\x97\xa5 and a dog.";
	struct strbuf out = STRBUF_INIT, shown = STRBUF_INIT, joined = STRBUF_INIT;
	lp_stream(tok, OAI_CHAT, text, &out, &shown);
	CHECK_STR(shown.buf, text);
	cJSON *root = cJSON_Parse(out.buf), *e;
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
	CHECK_MSG(cJSON_IsArray(content), "%s", out.buf);
	int partial = 0, k = 0;
	cJSON_ArrayForEach(e, content) {
		const cJSON *b, *bytes = cJSON_GetObjectItemCaseSensitive(e, "bytes");
		const char *token = cJSON_GetObjectItemCaseSensitive(e, "token")->valuestring;
		size_t start = joined.len;
		cJSON_ArrayForEach(b, bytes)
			sb_addch(&joined, b->valueint);
		if (!strncmp(token, "bytes:\\x", 8)) {
			partial++;
			CHECK(joined.len - start == 1);
			CHECK((unsigned)strtoul(token + 8, NULL, 16) ==
			      (unsigned char)joined.buf[start]);
		} else {
			CHECK(strlen(token) == joined.len - start &&
			      !memcmp(token, joined.buf + start, joined.len - start));
		}
		CHECK(cJSON_GetObjectItemCaseSensitive(e, "logprob")->valuedouble == -(k + 1));
		k++;
	}
	CHECK_INT(partial, 3);
	CHECK_STR(joined.buf, text);
	cJSON_Delete(root);
	sb_release(&out);
	sb_release(&shown);
	sb_release(&joined);
	tok_free(tok);
}

/* Completions: text_offset is where each token's text starts, in
 * characters of the text (Python string indexes). */
TEST(logprob_text_offsets_count_characters)
{
	struct tok *tok = stories_tok();
	static const char text[] = "Tim sa\xc3\xa9w a big red ball.";
	struct strbuf out = STRBUF_INIT, shown = STRBUF_INIT;
	lp_stream(tok, OAI_COMPLETION, text, &out, &shown);
	CHECK_STR(shown.buf, text);
	cJSON *root = cJSON_Parse(out.buf);
	const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(root, "tokens");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(root, "text_offset");
	CHECK_MSG(cJSON_IsArray(tokens) && cJSON_IsArray(offs) &&
		  cJSON_GetArraySize(tokens) == cJSON_GetArraySize(offs), "%s", out.buf);
	/* the text as Python would index it: one slot per code point */
	size_t chars = 0;
	for (int i = 0; i < cJSON_GetArraySize(tokens); i++) {
		const char *t = cJSON_GetArrayItem(tokens, i)->valuestring;
		CHECK_INT(cJSON_GetArrayItem(offs, i)->valueint, (long long)chars);
		for (const char *c = t; *c; c++)
			chars += ((unsigned char)*c & 0xc0) != 0x80;
	}
	CHECK_INT(chars, 24);	/* "Tim saéw a big red ball." */
	cJSON_Delete(root);
	sb_release(&out);
	sb_release(&shown);
	tok_free(tok);
}

/* ---- the request's state machine ---- */

static enum fe_sm_action sm_ev(struct fe_sm *s, enum fe_sm_event_kind kind)
{
	const struct fe_sm_event ev = { .kind = kind };
	return fe_sm_advance(s, &ev);
}

static enum fe_sm_action sm_routed(struct fe_sm *s, uint64_t worker, uint64_t prefill)
{
	const struct fe_sm_event ev = { .kind = FE_SM_ROUTED, .worker = worker,
					.prefill = prefill };
	return fe_sm_advance(s, &ev);
}

static enum fe_sm_action sm_tokens(struct fe_sm *s, const int32_t *ids, size_t n)
{
	const struct fe_sm_event ev = { .kind = FE_SM_TOKENS, .ids = ids, .n_ids = n };
	return fe_sm_advance(s, &ev);
}

static enum fe_sm_action sm_error(struct fe_sm *s, int code)
{
	const struct fe_sm_event ev = { .kind = FE_SM_WORKER_ERROR, .code = code };
	return fe_sm_advance(s, &ev);
}

TEST(call_sm_routes_then_streams_and_keeps_the_ids)
{
	struct fe_sm s;
	size_t n;
	const int32_t a[2] = { 7, 8 }, b[1] = { 9 };
	fe_sm_init(&s, 3);
	CHECK(s.state == FE_SM_ROUTE);
	CHECK(sm_tokens(&s, a, 2) == FE_SM_NONE);	/* no worker yet: not kept */
	CHECK(fe_sm_output(&s, &n) == NULL && n == 0);
	CHECK(sm_routed(&s, 0x11, 0) == FE_SM_CALL_WORKER && s.state == FE_SM_STREAM);
	CHECK(s.worker == 0x11 && s.tries == 1);
	CHECK(sm_tokens(&s, a, 2) == FE_SM_NONE && sm_tokens(&s, b, 1) == FE_SM_NONE);
	const int32_t *ids = fe_sm_output(&s, &n);
	CHECK(n == 3 && ids[0] == 7 && ids[1] == 8 && ids[2] == 9);
	CHECK(sm_ev(&s, FE_SM_CHOICE_END) == FE_SM_FINISH && s.state == FE_SM_DONE);
	/* answered: nothing more happens */
	CHECK(sm_ev(&s, FE_SM_NO_WORKER) == FE_SM_NONE && s.state == FE_SM_DONE);
	CHECK(sm_error(&s, -1) == FE_SM_NONE);
	fe_sm_release(&s);
}

/* A prefill worker named by the router: the remote step comes first, and
 * the streaming worker is called whether it succeeded or not. */
TEST(call_sm_remote_step_when_a_prefill_worker_is_named)
{
	for (int ok = 0; ok < 2; ok++) {
		struct fe_sm s;
		fe_sm_init(&s, 3);
		CHECK(sm_routed(&s, 0x22, 0x33) == FE_SM_CALL_PREFILL);
		CHECK(s.state == FE_SM_REMOTE_STEP && s.prefill == 0x33 && s.worker == 0x22);
		CHECK(sm_tokens(&s, (const int32_t[]){ 1 }, 1) == FE_SM_NONE);
		CHECK(s.state == FE_SM_REMOTE_STEP);
		CHECK(sm_ev(&s, ok ? FE_SM_REMOTE_DONE : FE_SM_REMOTE_FAILED) == FE_SM_CALL_WORKER);
		CHECK(s.state == FE_SM_STREAM && s.worker == 0x22);
		fe_sm_release(&s);
	}
}

/* A transport failure or a 503, before or after tokens, goes to another
 * worker (not the one that failed) with the ids so far kept, up to the
 * migration limit; a 400 or 500 fails; limit 0 never migrates. */
TEST(call_sm_migrates_up_to_the_limit)
{
	struct fe_sm s;
	size_t n;
	fe_sm_init(&s, 3);
	sm_routed(&s, 0x1, 0);
	CHECK(sm_error(&s, -104) == FE_SM_MIGRATE && s.state == FE_SM_ROUTE);
	CHECK(s.exclude == 0x1 && s.worker == 0 && s.migrations == 1);
	sm_routed(&s, 0x2, 0x9);	/* before tokens: a remote step of its own */
	CHECK(s.state == FE_SM_REMOTE_STEP);
	sm_ev(&s, FE_SM_REMOTE_DONE);
	sm_tokens(&s, (const int32_t[]){ 5, 6 }, 2);
	CHECK(sm_error(&s, 503) == FE_SM_MIGRATE && s.exclude == 0x2 && s.prefill == 0);
	CHECK(sm_tokens(&s, (const int32_t[]){ 99 }, 1) == FE_SM_NONE);	/* not streaming */
	sm_routed(&s, 0x3, 0);
	CHECK(s.tries == 3 && s.migrations == 2);
	sm_tokens(&s, (const int32_t[]){ 7 }, 1);
	const int32_t *ids = fe_sm_output(&s, &n);
	CHECK(n == 3 && ids[0] == 5 && ids[1] == 6 && ids[2] == 7);
	CHECK(sm_error(&s, -32) == FE_SM_MIGRATE);
	sm_routed(&s, 0x1, 0);
	CHECK(s.migrations == 3);
	CHECK(sm_error(&s, -104) == FE_SM_FAIL && s.state == FE_SM_FAILED);
	fe_sm_release(&s);

	static const int codes[] = { 400, 500, 404 };
	for (size_t i = 0; i < 3; i++) {
		fe_sm_init(&s, 3);
		sm_routed(&s, 0x1, 0);
		CHECK(!fe_sm_migratable(codes[i]));
		CHECK(sm_error(&s, codes[i]) == FE_SM_FAIL && s.state == FE_SM_FAILED);
		fe_sm_release(&s);
	}

	for (int tokens = 0; tokens < 2; tokens++) {
		fe_sm_init(&s, 0);
		sm_routed(&s, 0x1, 0);
		if (tokens)
			sm_tokens(&s, (const int32_t[]){ 5 }, 1);
		CHECK(sm_error(&s, -104) == FE_SM_FAIL && s.state == FE_SM_FAILED);
		fe_sm_release(&s);
	}
}

/* No worker, a refused prompt: the choice fails; a choice that ends
 * (also without a worker: nothing to generate) is done; nothing happens
 * after either. */
TEST(call_sm_failures_and_ends)
{
	static const enum fe_sm_event_kind fail[] = { FE_SM_NO_WORKER, FE_SM_BAD_PROMPT };
	for (size_t i = 0; i < 2; i++) {
		struct fe_sm s;
		fe_sm_init(&s, 3);
		CHECK(sm_ev(&s, fail[i]) == FE_SM_FAIL && s.state == FE_SM_FAILED);
		CHECK(sm_routed(&s, 1, 0) == FE_SM_NONE && s.state == FE_SM_FAILED);
		fe_sm_release(&s);
	}
	for (int at = 0; at < 3; at++) {	/* route, remote step, stream */
		struct fe_sm s;
		size_t n;
		fe_sm_init(&s, 3);
		if (at)
			sm_routed(&s, 1, at == 1 ? 2 : 0);
		CHECK(sm_ev(&s, FE_SM_CHOICE_END) == FE_SM_FINISH && s.state == FE_SM_DONE);
		CHECK(sm_error(&s, -104) == FE_SM_NONE && s.state == FE_SM_DONE);
		CHECK(fe_sm_output(&s, &n) == NULL && n == 0);
		fe_sm_release(&s);
	}
}

TEST(call_sm_state_names)
{
	CHECK_STR(fe_sm_state_name(FE_SM_ROUTE), "route");
	CHECK_STR(fe_sm_state_name(FE_SM_REMOTE_STEP), "remote_step");
	CHECK_STR(fe_sm_state_name(FE_SM_FAILED), "failed");
}

int main(void)
{
	return RUN_TESTS();
}
