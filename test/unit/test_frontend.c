/*
 * test_frontend.c - the frontend's pure parts: stop strings over streamed
 * text, the generate protocol round trip, Prometheus histograms, request
 * validation (the fields OpenAI's API reference defines), and what of a
 * chat request reaches the chat template.
 */
#include "check.h"
#include "core/frontend/internal.h"
#include "core/frontend/stop.h"
#include "core/metrics.h"
#include "core/proto/generate.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"

#include <math.h>

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
	CHECK(stop_scan(stops, 2, "the early bird, later", 21, &hit) == 4 && hit);
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
	gen_request_encode(&r, &sb);
	CHECK(gen_request_parse(sb.buf, sb.len, &back) == 0);
	CHECK(back.n_tokens == 3 && back.token_ids[2] == 333);
	CHECK(back.s.temperature == 0.5 && back.s.top_k == 7 && back.s.seed == 42);
	CHECK(isnan(back.s.top_p) && back.max_tokens == 9 && back.logprobs == 3);
	CHECK(back.n_stop_ids == 1 && back.stop_token_ids[0] == 2);
	gen_request_release(&back);
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

int main(void)
{
	return RUN_TESTS();
}
