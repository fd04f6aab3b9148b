/*
 * test_bench.c - the parts of dyn bench that need no server: the SSE
 * parser (net/sse_reader.h), summary statistics (core/bench/stats.h),
 * the Mooncake trace workload and its warm-up prompts
 * (core/bench/workload.h), and the aggregates' token counts, error
 * messages and CPU warning (core/bench/metrics.h).
 *
 * Expected values are written out independently of the code under test:
 * SSE events by hand from the stream text, percentiles by hand and
 * checked with Python's statistics module (see stats_* below), trace
 * blocks by comparing words of different requests with each other rather
 * than with the generator.
 */
#include "core/bench/metrics.h"
#include "core/bench/stats.h"
#include "core/bench/workload.h"
#include "core/bench/words.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "net/sse_reader.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- sse_reader -------------------------------------------------------- */

#define MAX_EVENTS 16

struct events {
	char *ev[MAX_EVENTS];
	size_t len[MAX_EVENTS];
	int n;
	int stop_at;		/* return non-zero on this event (1-based; 0 never) */
};

static int collect(void *arg, const char *data, size_t len)
{
	struct events *e = arg;
	if (e->n < MAX_EVENTS) {
		e->ev[e->n] = malloc(len + 1);
		memcpy(e->ev[e->n], data, len);
		e->ev[e->n][len] = '\0';
		e->len[e->n] = len;
	}
	e->n++;
	return e->stop_at && e->n == e->stop_at ? 7 : 0;
}

static void events_free(struct events *e)
{
	for (int i = 0; i < e->n && i < MAX_EVENTS; i++)
		free(e->ev[i]);
	memset(e, 0, sizeof(*e));
}

/* Feed text in pieces ending at the given offsets (ascending, < len). */
static int feed_split(const char *text, const size_t *cuts, int ncuts, struct events *e)
{
	struct sse_reader r;
	size_t at = 0;
	int rc = 0;

	sse_reader_init(&r);
	for (int i = 0; i <= ncuts && !rc; i++) {
		size_t end = i < ncuts ? cuts[i] : strlen(text);
		rc = sse_feed(&r, text + at, end - at, collect, e);
		at = end;
	}
	sse_reader_release(&r);
	return rc;
}

static int same_events(const struct events *e, const char *const *want, int nwant)
{
	if (e->n != nwant)
		return 0;
	for (int i = 0; i < nwant; i++)
		if (strlen(want[i]) != e->len[i] || memcmp(e->ev[i], want[i], e->len[i]))
			return 0;
	return 1;
}

/* A stream exercising the rules: LF, CRLF and CR line ends, comments,
 * fields other than data, "data:" with and without the optional space,
 * a data line without a colon, a multi-line event, an event with no data
 * (not delivered), [DONE], and a trailing event without its blank line
 * (not delivered). */
static const char stream[] =
	": keep-alive comment\n"
	"data: {\"a\":1}\n"
	"\n"
	"event: message\r\n"
	"id: 7\r\n"
	"data:{\"b\":2}\r\n"
	"\r\n"
	"data: line one\r"
	"data:  two leading spaces\r"
	"data\r"
	"\r"
	"retry: 100\n"
	"id: 8\n"
	"\n"
	": another comment: with a colon\r\n"
	"data: x: y\n"
	"\n"
	"data: [DONE]\r\n"
	"\r\n"
	"data: unterminated";

static const char *const stream_want[] = {
	"{\"a\":1}",
	"{\"b\":2}",
	"line one\n two leading spaces\n",
	"x: y",
	"[DONE]",
};

TEST(sse_whole_stream)
{
	struct events e = { 0 };
	CHECK_INT(feed_split(stream, NULL, 0, &e), 0);
	int ok = same_events(&e, stream_want, 5);
	events_free(&e);
	CHECK(ok);
}

TEST(sse_every_single_split)
{
	size_t len = strlen(stream);
	for (size_t c = 0; c <= len; c++) {
		struct events e = { 0 };
		size_t cut = c;
		feed_split(stream, &cut, 1, &e);
		int ok = same_events(&e, stream_want, 5);
		events_free(&e);
		CHECK_MSG(ok, "split at byte %zu", c);
	}
}

TEST(sse_every_pair_of_splits)
{
	size_t len = strlen(stream);
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			struct events e = { 0 };
			size_t cuts[2] = { a, b };
			feed_split(stream, cuts, 2, &e);
			int ok = same_events(&e, stream_want, 5);
			events_free(&e);
			CHECK_MSG(ok, "splits at bytes %zu and %zu", a, b);
		}
	}
}

TEST(sse_byte_by_byte)
{
	size_t len = strlen(stream);
	size_t *cuts = calloc(len, sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	struct events e = { 0 };
	feed_split(stream, cuts, (int)len - 1, &e);
	free(cuts);
	int ok = same_events(&e, stream_want, 5);
	events_free(&e);
	CHECK(ok);
}

/* A CR at the end of one piece and the LF of the same CRLF at the start
 * of the next must not make an extra blank line (which would end an
 * event early). */
TEST(sse_crlf_split_across_pieces)
{
	static const char s[] = "data: a\r\ndata: b\r\n\r\n";
	static const char *const want[] = { "a\nb" };
	size_t cut = 8;	/* after "data: a\r" */
	struct events e = { 0 };
	feed_split(s, &cut, 1, &e);
	int ok = same_events(&e, want, 1);
	events_free(&e);
	CHECK(ok);
}

TEST(sse_lf_only_and_crlf_only_streams)
{
	static const char lf[] = "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n";
	static const char crlf[] = "data: 1\r\n\r\ndata: 2\r\n\r\ndata: [DONE]\r\n\r\n";
	static const char *const want[] = { "1", "2", "[DONE]" };
	struct events e = { 0 };
	feed_split(lf, NULL, 0, &e);
	int ok = same_events(&e, want, 3);
	events_free(&e);
	CHECK(ok);
	feed_split(crlf, NULL, 0, &e);
	ok = same_events(&e, want, 3);
	events_free(&e);
	CHECK(ok);
}

TEST(sse_empty_data_is_an_event)
{
	/* "data:" and "data" both add an empty line of data: an event. */
	static const char s[] = "data:\n\ndata\n\n\n\n";
	static const char *const want[] = { "", "" };
	struct events e = { 0 };
	feed_split(s, NULL, 0, &e);
	int ok = same_events(&e, want, 2);
	events_free(&e);
	CHECK(ok);
}

TEST(sse_callback_stops_parsing)
{
	struct events e = { .stop_at = 2 };
	struct sse_reader r;
	sse_reader_init(&r);
	int rc = sse_feed(&r, stream, strlen(stream), collect, &e);
	size_t delivered = r.events;
	sse_reader_release(&r);
	int n = e.n;
	int ok = n >= 2 && !strcmp(e.ev[1], "{\"b\":2}");
	events_free(&e);
	CHECK_INT(rc, 7);
	CHECK_INT(n, 2);
	CHECK_INT(delivered, 2);
	CHECK(ok);
}

/* ---- stats ------------------------------------------------------------- */

/*
 * Expected percentiles follow numpy's default ("linear") method: with the
 * values sorted, the q-th percentile is at position (n - 1) q / 100,
 * interpolated between the two neighbours.  Worked by hand, then checked
 * with Python 3.11:
 *   statistics.quantiles(v, n=100, method="inclusive")[q - 1]
 * (documented as the same method), and statistics.mean / statistics.stdev
 * (sample standard deviation, n - 1) for mean and std.
 */
static int near(double a, double b)
{
	return fabs(a - b) <= 1e-9 * (1 + fabs(b));
}
#define CHECK_NEAR(a, b)                                                  \
	CHECK_MSG(near(a, b), "%s == %.17g, expected %.17g", #a, (double)(a), (double)(b))

TEST(stats_five_values_unsorted)
{
	/* sorted 15 20 35 40 50, positions 0.04 q: p50 at 2 -> 35; p90 at
	 * 3.6 -> 40 + 0.6 x 10 = 46; p95 at 3.8 -> 48; p99 at 3.96 -> 49.6;
	 * mean 160 / 5 = 32; squares 289 144 9 64 324 = 830, / 4, sqrt. */
	double v[] = { 40, 15, 50, 20, 35 };
	struct bench_stat s;
	bench_stat_compute(v, 5, &s);
	CHECK_INT(s.n, 5);
	CHECK_NEAR(s.min, 15);
	CHECK_NEAR(s.max, 50);
	CHECK_NEAR(s.mean, 32);
	CHECK_NEAR(s.p50, 35);
	CHECK_NEAR(s.p90, 46);
	CHECK_NEAR(s.p95, 48);
	CHECK_NEAR(s.p99, 49.6);
	CHECK_NEAR(s.std, 14.404860290887934);	/* sqrt(207.5) */
	CHECK(v[0] == 15 && v[4] == 50);	/* sorted in place */
}

TEST(stats_one_to_ten)
{
	/* positions 0.09 q: p50 4.5 -> 5.5; p90 8.1 -> 9.1; p95 8.55 -> 9.55;
	 * p99 8.91 -> 9.91. */
	double v[10];
	for (int i = 0; i < 10; i++)
		v[i] = 10 - i;
	struct bench_stat s;
	bench_stat_compute(v, 10, &s);
	CHECK_NEAR(s.p50, 5.5);
	CHECK_NEAR(s.p90, 9.1);
	CHECK_NEAR(s.p95, 9.55);
	CHECK_NEAR(s.p99, 9.91);
	CHECK_NEAR(s.mean, 5.5);
	CHECK_NEAR(s.std, 3.0276503540974917);
}

TEST(stats_with_negatives_and_ties)
{
	/* sorted -4 0.5 1 2 2 3 9, positions 0.06 q: p50 3 -> 2; p90 5.4 ->
	 * 3 + 0.4 x 6 = 5.4; p95 5.7 -> 7.2; p99 5.94 -> 8.64. */
	double v[] = { 3, 1, 2, 2, 9, -4, 0.5 };
	struct bench_stat s;
	bench_stat_compute(v, 7, &s);
	CHECK_NEAR(s.min, -4);
	CHECK_NEAR(s.max, 9);
	CHECK_NEAR(s.p50, 2);
	CHECK_NEAR(s.p90, 5.4);
	CHECK_NEAR(s.p95, 7.2);
	CHECK_NEAR(s.p99, 8.64);
	CHECK_NEAR(s.mean, 1.9285714285714286);	/* 13.5 / 7 */
	CHECK_NEAR(s.std, 3.8560404068224723);
}

TEST(stats_two_values_and_bounds)
{
	double v[] = { 100, 0 };
	struct bench_stat s;
	bench_stat_compute(v, 2, &s);
	CHECK_NEAR(s.p50, 50);
	CHECK_NEAR(s.p90, 90);
	CHECK_NEAR(s.p99, 99);
	CHECK_NEAR(s.std, 70.710678118654752);	/* sqrt(5000) */
	CHECK_NEAR(bench_percentile(v, 2, 0), 0);
	CHECK_NEAR(bench_percentile(v, 2, 100), 100);
	CHECK_NEAR(bench_percentile(v, 2, 25), 25);
}

TEST(stats_one_and_none)
{
	double one[] = { 7.5 };
	struct bench_stat s;
	bench_stat_compute(one, 1, &s);
	CHECK_INT(s.n, 1);
	CHECK_NEAR(s.mean, 7.5);
	CHECK_NEAR(s.p50, 7.5);
	CHECK_NEAR(s.p99, 7.5);
	CHECK_NEAR(s.min, 7.5);
	CHECK_NEAR(s.max, 7.5);
	CHECK_NEAR(s.std, 0);
	bench_stat_compute(NULL, 0, &s);
	CHECK_INT(s.n, 0);
	CHECK(s.mean == 0 && s.p50 == 0 && s.p99 == 0 && s.max == 0);
	CHECK(bench_percentile(NULL, 0, 50) == 0);
}

/* ---- Mooncake trace workload ------------------------------------------- */

struct words_list {
	char **w;
	size_t n;
};

/* Split " a b c" into words. */
static void split_words(const char *s, struct words_list *out)
{
	out->n = 0;
	out->w = NULL;
	size_t cap = 0;
	while (*s) {
		while (*s == ' ')
			s++;
		if (!*s)
			break;
		const char *e = strchr(s, ' ');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (out->n == cap) {
			cap = cap ? cap * 2 : 64;
			out->w = realloc(out->w, cap * sizeof(*out->w));
		}
		out->w[out->n] = strndup(s, n);
		out->n++;
		s += n;
	}
}

static void words_list_free(struct words_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->w[i]);
	free(l->w);
	l->w = NULL;
	l->n = 0;
}

/* Words [a, a + n) of x equal words [b, b + n) of y. */
static int same_run(const struct words_list *x, size_t a, const struct words_list *y, size_t b,
		    size_t n)
{
	if (a + n > x->n || b + n > y->n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(x->w[a + i], y->w[b + i]))
			return 0;
	return 1;
}

static char trace_path[64];

static void write_trace(const char *text)
{
	snprintf(trace_path, sizeof(trace_path), "/tmp/dyn-test-bench-XXXXXX");
	int fd = mkstemp(trace_path);
	CHECK(fd >= 0);
	size_t len = strlen(text);
	CHECK(write(fd, text, len) == (ssize_t)len);
	close(fd);
}

/* Request i's prompt words from a trace workload. */
static void trace_words(struct bench_workload *wl, long i, struct words_list *out, long *isl,
			long *osl, double *ts)
{
	struct bench_item it;
	bench_item_init(&it);
	CHECK_INT(bench_workload_item(wl, i, 0, &it), 0);
	split_words(it.prompt.buf ? it.prompt.buf : "", out);
	if (isl)
		*isl = it.isl;
	if (osl)
		*osl = it.osl;
	if (ts)
		*ts = it.ts_ms;
	bench_item_release(&it);
}

static const char trace_text[] =
	"{\"timestamp\": 0, \"input_length\": 12, \"output_length\": 3, \"hash_ids\": [1, 2, 3]}\n"
	"{\"timestamp\": 50, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1, 2, 4]}\n"
	"\n"
	"{\"timestamp\": 90, \"input_length\": 6, \"output_length\": 2, \"hash_ids\": [9, 3]}\n"
	"{\"timestamp\": 120, \"input_length\": 8, \"output_length\": 7, \"hash_ids\": [5, 6]}\n"
	"{\"timestamp\": 130, \"input_length\": 14, \"output_length\": 1, \"hash_ids\": [1, 2, 3]}\n";

static struct bench_workload *trace_workload(const struct bench_words *bw, long block,
					     double scale, uint64_t seed)
{
	struct bench_workload_cfg c = {
		.trace = trace_path, .block_len = block, .scale = scale, .seed = seed,
		.turns = 1, .words = bw,
	};
	struct bench_workload *wl = NULL;
	CHECK_INT(bench_workload_new(&c, &wl), 0);
	return wl;
}

TEST(trace_hash_ids_map_to_blocks)
{
	struct bench_words bw;
	bench_words_builtin(&bw);
	write_trace(trace_text);
	struct bench_workload *wl = trace_workload(&bw, 4, 1, 42);
	unlink(trace_path);
	CHECK_INT(bench_workload_count(wl), 5);

	struct words_list r[5];
	long isl[5], osl[5];
	double ts[5];
	for (int i = 0; i < 5; i++)
		trace_words(wl, i, &r[i], &isl[i], &osl[i], &ts[i]);

	/* Lengths: input_length words, the last block cut (12 = 4+4+4,
	 * 10 = 4+4+2, 6 = 4+2, 8 = 4+4, 14 = 4+4+4+2 with a block past the
	 * hash ids). */
	int lens_ok = r[0].n == 12 && r[1].n == 10 && r[2].n == 6 && r[3].n == 8 && r[4].n == 14;
	int isl_ok = isl[0] == 12 && isl[1] == 10 && isl[2] == 6 && isl[3] == 8 && isl[4] == 14;
	int osl_ok = osl[0] == 3 && osl[1] == 5 && osl[2] == 2 && osl[3] == 7 && osl[4] == 1;
	int ts_ok = ts[0] == 0 && ts[1] == 50 && ts[2] == 90 && ts[3] == 120 && ts[4] == 130;
	/* Equal ids, equal blocks: ids 1, 2 shared by requests 0, 1, 4; id 3
	 * of request 0 (third block) is the second block of request 2 (cut
	 * to 2 words) and the third of request 4. */
	int same = same_run(&r[0], 0, &r[1], 0, 8) && same_run(&r[0], 0, &r[4], 0, 12) &&
		   same_run(&r[0], 8, &r[2], 4, 2);
	/* Different ids, different blocks (4 words drawn from ~190: equal by
	 * chance with negligible probability). */
	int differ = !same_run(&r[0], 8, &r[1], 8, 2) && !same_run(&r[2], 0, &r[0], 0, 4) &&
		     !same_run(&r[3], 0, &r[3], 4, 4) && !same_run(&r[3], 0, &r[0], 0, 4);
	for (int i = 0; i < 5; i++)
		words_list_free(&r[i]);
	bench_workload_free(wl);
	bench_words_free(&bw);
	CHECK(lens_ok);
	CHECK(isl_ok);
	CHECK(osl_ok);
	CHECK(ts_ok);
	CHECK(same);
	CHECK(differ);
}

TEST(trace_deterministic_across_workloads)
{
	struct bench_words bw;
	bench_words_builtin(&bw);
	write_trace(trace_text);
	struct bench_workload *a = trace_workload(&bw, 4, 1, 42);
	struct bench_workload *b = trace_workload(&bw, 4, 1, 42);
	struct bench_workload *c = trace_workload(&bw, 4, 1, 43);
	unlink(trace_path);
	int equal = 1, differ = 0;
	for (long i = 0; i < 10; i++) {	/* past the end: the trace wraps */
		struct words_list x, y, z;
		trace_words(a, i, &x, NULL, NULL, NULL);
		trace_words(b, i, &y, NULL, NULL, NULL);
		trace_words(c, i, &z, NULL, NULL, NULL);
		equal &= x.n == y.n && same_run(&x, 0, &y, 0, x.n);
		differ |= !same_run(&x, 0, &z, 0, x.n);
		if (i >= 5) {
			/* Request i is line i - 5 again: the same hash-id
			 * blocks (request 4's two words past its hash ids
			 * are its own). */
			static const size_t hashed[] = { 12, 10, 6, 8, 12 };
			struct words_list w;
			trace_words(a, i - 5, &w, NULL, NULL, NULL);
			equal &= w.n == x.n && same_run(&w, 0, &x, 0, hashed[i - 5]);
			words_list_free(&w);
		}
		words_list_free(&x);
		words_list_free(&y);
		words_list_free(&z);
	}
	bench_workload_free(a);
	bench_workload_free(b);
	bench_workload_free(c);
	bench_words_free(&bw);
	CHECK_MSG(equal, "the same trace and seed gave different prompts");
	CHECK_MSG(differ, "another seed gave the same prompts");
}

TEST(trace_length_scale)
{
	/* Scale 0.5 with --block-len 8: blocks of 4, input 12 -> 6 (4 + 2),
	 * 10 -> 5, 6 -> 3, 8 -> 4, 14 -> 7; outputs 3 -> 2 (1.5 rounds away
	 * from zero), 5 -> 3, 2 -> 1, 7 -> 4, 1 -> 1 (0.5 rounds to 1). */
	struct bench_words bw;
	bench_words_builtin(&bw);
	write_trace(trace_text);
	struct bench_workload *half = trace_workload(&bw, 8, 0.5, 42);
	struct bench_workload *full = trace_workload(&bw, 4, 1, 42);
	unlink(trace_path);
	static const long want_in[] = { 6, 5, 3, 4, 7 }, want_out[] = { 2, 3, 1, 4, 1 };
	int lens_ok = 1, blocks_ok = 1;
	for (long i = 0; i < 5; i++) {
		struct words_list h, f;
		long isl, osl;
		trace_words(half, i, &h, &isl, &osl, NULL);
		trace_words(full, i, &f, NULL, NULL, NULL);
		lens_ok &= (long)h.n == want_in[i] && isl == want_in[i] && osl == want_out[i];
		/* The same hash ids give the same blocks at block length 4
		 * whether that came from scaling or not. */
		size_t n = h.n < f.n ? h.n : f.n;
		blocks_ok &= same_run(&h, 0, &f, 0, n > 4 ? 4 : n);
		words_list_free(&h);
		words_list_free(&f);
	}
	bench_workload_free(half);
	bench_workload_free(full);
	bench_words_free(&bw);
	CHECK(lens_ok);
	CHECK(blocks_ok);
}

TEST(sse_line_capped)
{
	/* A line without end stops growing at SSE_MAX_LINE: sse_feed fails
	 * (and keeps failing) instead of buffering all that comes. */
	struct sse_reader r;
	struct events e = { 0 };
	size_t piece = 64 * 1024;
	char *x = malloc(piece);
	memset(x, 'x', piece);
	sse_reader_init(&r);
	int rc = sse_feed(&r, "data: ok\n\ndata: ", 16, collect, &e);
	size_t fed = 0;
	while (rc == 0 && fed < 64 * piece) {
		rc = sse_feed(&r, x, piece, collect, &e);
		fed += piece;
	}
	CHECK_MSG(rc == SSE_ERR_TOO_LONG, "rc %d after %zu bytes", rc, fed);
	CHECK_MSG(fed <= SSE_MAX_LINE + piece, "failed only after %zu bytes", fed);
	CHECK_MSG(r.line.alloc <= 2 * (size_t)SSE_MAX_LINE, "line buffer %zu bytes", r.line.alloc);
	CHECK(sse_feed(&r, "\n\n", 2, collect, &e) == SSE_ERR_TOO_LONG);
	CHECK(e.n == 1 && !strcmp(e.ev[0], "ok"));
	sse_reader_release(&r);
	events_free(&e);

	/* Many data lines of one event count together. */
	sse_reader_init(&r);
	rc = 0;
	for (int i = 0; i < 40 && rc == 0; i++) {
		rc = sse_feed(&r, "data: ", 6, collect, &e);
		if (!rc)
			rc = sse_feed(&r, x, piece, collect, &e);
		if (!rc)
			rc = sse_feed(&r, "\n", 1, collect, &e);
	}
	CHECK_MSG(rc == SSE_ERR_TOO_LONG && e.n == 0, "an event of 40 x 64 KiB lines: rc %d", rc);
	sse_reader_release(&r);
	events_free(&e);

	/* Just under the cap is fine. */
	sse_reader_init(&r);
	rc = sse_feed(&r, "data: ", 6, collect, &e);
	for (int i = 0; i < 8 && rc == 0; i++)
		rc = sse_feed(&r, x, piece, collect, &e);
	if (!rc)
		rc = sse_feed(&r, "\n\n", 2, collect, &e);
	CHECK_MSG(rc == 0 && e.n == 1 && e.len[0] == 8 * piece, "512 KiB event: rc %d n %d", rc,
		  e.n);
	sse_reader_release(&r);
	events_free(&e);
	free(x);
}

TEST(trace_rejects_bad_lines)
{
	struct bench_words bw;
	bench_words_builtin(&bw);
	static const char *const bad[] = {
		"not json\n",
		"{\"timestamp\": 0, \"output_length\": 3, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": 5}\n",
		"\n\n",
		/* lengths: whole, finite, at most 1e8 */
		"{\"timestamp\": 0, \"input_length\": 1e12, \"output_length\": 3, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": 1e999, \"output_length\": 3, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": 4.5, \"output_length\": 3, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1e999, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": -1, \"hash_ids\": [1]}\n",
		"{\"timestamp\": 0, \"input_length\": \"4\", \"output_length\": 3, \"hash_ids\": [1]}\n",
		/* hash ids: whole numbers only */
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [\"a\"]}\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1.5]}\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1e999]}\n",
		/* timestamps: finite, >= 0 */
		"{\"timestamp\": 1e999, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1]}\n",
		"{\"timestamp\": -5, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1]}\n",
		/* nothing after the object */
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1]} x\n",
		"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, \"hash_ids\": [1]}{}\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_trace(bad[i]);
		struct bench_workload_cfg c = {
			.trace = trace_path, .block_len = 4, .scale = 1, .turns = 1, .words = &bw,
		};
		struct bench_workload *wl = NULL;
		int rc = bench_workload_new(&c, &wl);
		unlink(trace_path);
		bench_workload_free(wl);
		CHECK_MSG(rc < 0, "line %zu accepted", i);
		/* The message names the file and the line (the first line
		 * unless the file has no request at all). */
		if (rc < 0 && i != 3) {
			char want[80];
			snprintf(want, sizeof(want), "%s:1:", trace_path);
			CHECK_MSG(strstr(err_msg(), want) != NULL, "line %zu: message '%s'", i,
				  err_msg());
		}
	}
	/* A good line is still accepted, with whitespace after the object. */
	write_trace("{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 3, "
		    "\"hash_ids\": [1, -2]}  \r\n");
	{
		struct bench_workload_cfg c = {
			.trace = trace_path, .block_len = 4, .scale = 1, .turns = 1, .words = &bw,
		};
		struct bench_workload *wl = NULL;
		int rc = bench_workload_new(&c, &wl);
		unlink(trace_path);
		CHECK_MSG(rc == 0 && bench_workload_count(wl) == 1, "good line rejected: %s",
			  rc < 0 ? err_msg() : "");
		bench_workload_free(wl);
	}
	/* Different non-numeric ids must not collapse into one block: they
	 * are rejected (checked above); a scaled length over the cap too. */
	write_trace("{\"input_length\": 60000000, \"output_length\": 3, \"hash_ids\": [1]}\n");
	{
		struct bench_workload_cfg c = {
			.trace = trace_path, .block_len = 4, .scale = 2, .turns = 1, .words = &bw,
		};
		struct bench_workload *wl = NULL;
		int rc = bench_workload_new(&c, &wl);
		unlink(trace_path);
		bench_workload_free(wl);
		CHECK_MSG(rc < 0, "input_length 6e7 at --length-scale 2 accepted");
	}
	/* Prompt files under --fixed-schedule: every line needs a timestamp
	 * (second line has none); without it the same file is fine. */
	for (int fixed = 0; fixed < 2; fixed++) {
		write_trace("{\"text\": \"a b\", \"timestamp\": 5}\n{\"text\": \"c d\"}\n");
		struct bench_workload_cfg c = {
			.prompts = trace_path, .block_len = 4, .scale = 1, .turns = 1, .words = &bw,
			.fixed_schedule = fixed,
		};
		struct bench_workload *wl = NULL;
		int rc = bench_workload_new(&c, &wl);
		char want[80];
		snprintf(want, sizeof(want), "%s:2:", trace_path);
		unlink(trace_path);
		bench_workload_free(wl);
		if (fixed)
			CHECK_MSG(rc < 0 && strstr(err_msg(), want), "untimed line under "
				  "--fixed-schedule: rc %d '%s'", rc, rc < 0 ? err_msg() : "");
		else
			CHECK_MSG(rc == 0, "prompt file without --fixed-schedule rejected");
	}
	/* Prompt files: output_length must be a whole number too. */
	write_trace("{\"text\": \"a b\", \"output_length\": 1e12}\n");
	{
		struct bench_workload_cfg c = {
			.prompts = trace_path, .block_len = 4, .scale = 1, .turns = 1, .words = &bw,
		};
		struct bench_workload *wl = NULL;
		int rc = bench_workload_new(&c, &wl);
		unlink(trace_path);
		bench_workload_free(wl);
		CHECK_MSG(rc < 0, "prompt output_length 1e12 accepted");
	}
	bench_words_free(&bw);
}

TEST(warmup_prompts_share_no_trace_block)
{
	/* Warm-up request k has trace entry k's length but none of the
	 * trace's blocks: no 4-word run of a warm-up prompt (at any offset)
	 * appears in any measured request's prompt. */
	struct bench_words bw;
	bench_words_builtin(&bw);
	write_trace(trace_text);
	struct bench_workload *wl = trace_workload(&bw, 4, 1, 42);
	unlink(trace_path);
	static const size_t lens[] = { 12, 10, 6, 8, 14 };
	struct words_list meas[5];
	for (int i = 0; i < 5; i++)
		trace_words(wl, i, &meas[i], NULL, NULL, NULL);
	int lens_ok = 1, shared = 0, repeat = 0;
	struct words_list prev = { NULL, 0 };
	for (long k = 0; k < 7; k++) {
		struct bench_item it;
		bench_item_init(&it);
		CHECK_INT(bench_workload_warmup_item(wl, k, &it), 0);
		struct words_list w;
		split_words(it.prompt.buf ? it.prompt.buf : "", &w);
		lens_ok &= w.n == lens[k % 5] && it.isl == (long)lens[k % 5] && it.turns == 1 &&
			   it.ts_ms < 0;
		for (size_t a = 0; a + 4 <= w.n; a++)
			for (int i = 0; i < 5; i++)
				for (size_t b = 0; b + 4 <= meas[i].n; b++)
					shared |= same_run(&w, a, &meas[i], b, 4);
		if (prev.n && w.n >= 4)
			repeat |= same_run(&w, 0, &prev, 0, 4);
		words_list_free(&prev);
		prev = w;
		bench_item_release(&it);
	}
	words_list_free(&prev);
	for (int i = 0; i < 5; i++)
		words_list_free(&meas[i]);
	bench_workload_free(wl);
	bench_words_free(&bw);
	CHECK(lens_ok);
	CHECK_MSG(!shared, "a warm-up prompt shares a block with a measured request");
	CHECK_MSG(!repeat, "consecutive warm-up prompts start alike");
}

/* ---- aggregates ------------------------------------------------------------ */

static struct bench_rec rec_ok(long isl, long usage_in, long out)
{
	struct bench_rec r;
	memset(&r, 0, sizeof(r));
	r.isl = isl;
	r.usage_in = usage_in;
	r.usage_out = out;
	r.out_tokens = out;
	r.tok_out = -1;
	r.ttft_ms = 10;
	r.e2e_ms = 20;
	r.tpot_ms = -1;
	r.sched_ms = -1;
	return r;
}

TEST(agg_input_tokens_are_the_servers)
{
	/* Server counts 121 and 60 where the prompts were built as 40 and
	 * 50 tokens (a chat template); the third request has no usage, so
	 * its built count (30) stands.  Totals: 121 + 60 + 30 = 211 input,
	 * 3 x 5 = 15 output tokens over 2 s. */
	struct bench_rec recs[3] = { rec_ok(40, 121, 5), rec_ok(50, 60, 5), rec_ok(30, -1, 5) };
	struct bench_run_result res = { .recs = recs, .n = 3, .wall_s = 2 };
	struct bench_agg a;
	bench_agg_compute(&res, NULL, &a);
	CHECK_INT(a.total_in, 211);
	CHECK_INT(a.total_out, 15);
	CHECK_NEAR(a.isl.mean, 211.0 / 3);
	CHECK_NEAR(a.isl.max, 121);
	CHECK_NEAR(a.total_tput, (211.0 + 15) / 2);
	CHECK_INT(a.usage_in_mismatch, 2);
	CHECK_INT(a.usage_in_checked, 2);
}

TEST(agg_first_error_message_of_each_kind)
{
	struct bench_rec recs[5] = { rec_ok(1, 1, 1), rec_ok(1, 1, 1), rec_ok(1, 1, 1),
				     rec_ok(1, 1, 1), rec_ok(1, 1, 1) };
	char m1[] = "HTTP 500: first", m2[] = "HTTP 500: second", m3[] = "connection lost";
	snprintf(recs[1].error, sizeof(recs[1].error), "http_500");
	recs[1].error_msg = m1;
	snprintf(recs[2].error, sizeof(recs[2].error), "disconnect");
	recs[2].error_msg = m3;
	snprintf(recs[3].error, sizeof(recs[3].error), "http_500");
	recs[3].error_msg = m2;
	snprintf(recs[4].error, sizeof(recs[4].error), "timeout");	/* no message */
	struct bench_run_result res = { .recs = recs, .n = 5, .wall_s = 1 };
	struct bench_agg a;
	bench_agg_compute(&res, NULL, &a);
	struct strbuf t = STRBUF_INIT;
	bench_agg_table(&a, "title", &t);
	CHECK(strstr(t.buf, "\nFirst http_500 error: HTTP 500: first\n") != NULL);
	CHECK(strstr(t.buf, "\nFirst disconnect error: connection lost\n") != NULL);
	CHECK(strstr(t.buf, "HTTP 500: second") == NULL);
	CHECK(strstr(t.buf, "First timeout error") == NULL);
	CHECK(strstr(t.buf, "(http_500 2, disconnect 1, timeout 1)") != NULL);
	sb_release(&t);
}

TEST(agg_cpu_warning_needs_a_long_enough_run)
{
	struct bench_agg a;
	memset(&a, 0, sizeof(a));
	a.wall_s = 0.0005, a.cpu_pct = 300;	/* start-up CPU over half a millisecond */
	CHECK(!bench_agg_cpu_saturated(&a));
	a.wall_s = 0.9, a.cpu_pct = 99;
	CHECK(!bench_agg_cpu_saturated(&a));
	a.wall_s = 2, a.cpu_pct = 95;
	CHECK(bench_agg_cpu_saturated(&a));
	a.wall_s = 60, a.cpu_pct = 50;
	CHECK(!bench_agg_cpu_saturated(&a));
}

int main(void)
{
	return RUN_TESTS();
}
