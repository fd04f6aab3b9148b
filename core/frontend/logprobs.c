/*
 * logprobs.c - sampled tokens' logprob entries lined up with the text
 * (logprobs.h).
 */
#include "core/frontend/logprobs.h"

#include "core/proto/generate.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xef\xbf\xbd"	/* U+FFFD, what an invalid byte run reads as */

struct fe_lp_held {
	int special;
	size_t nbytes;			/* raw bytes it brings (an estimate) */
	char raw[1];			/* a byte piece's byte */
	size_t nraw;			/* 0: not known */
	double logprob;
	struct strbuf top;		/* its alternatives, rendered */
};

void fe_lp_init(struct fe_lp *a, const struct tok *tok, enum oai_api api, int top_n)
{
	memset(a, 0, sizeof(*a));
	a->tok = tok;
	a->top_n = top_n;
	oai_logprobs_init(&a->out, api, top_n >= 0);
}

static void drop_held(struct fe_lp *a)
{
	for (size_t i = 0; i < a->nheld; i++)
		sb_release(&a->held[i].top);
	a->nheld = 0;
}

void fe_lp_release(struct fe_lp *a)
{
	drop_held(a);
	free(a->held);
	a->held = NULL;
	a->aheld = 0;
	oai_logprobs_release(&a->out);
}

/* Remember id as text context for the alternatives (special ids add none). */
static void context_push(struct fe_lp *a, int32_t id)
{
	if (tok_is_special(a->tok, id))
		return;
	if (a->nctx == FE_LP_CONTEXT) {
		memmove(a->ctx, a->ctx + 1, (FE_LP_CONTEXT - 1) * sizeof(a->ctx[0]));
		a->nctx--;
	}
	a->ctx[a->nctx++] = id;
}

void fe_lp_begin(struct fe_lp *a, const int32_t *prompt, size_t n, size_t text_chars)
{
	drop_held(a);
	oai_logprobs_reset(&a->out);
	a->text_chars = text_chars;
	a->nctx = 0;
	for (size_t i = n > FE_LP_CONTEXT ? n - FE_LP_CONTEXT : 0; i < n; i++)
		context_push(a, prompt[i]);
}

/* Whether id is a byte-fallback piece "<0xNN>". */
static int is_byte_piece(const struct tok *tok, int32_t id)
{
	size_t len;
	const char *s = tok_id_to_token(tok, id, &len);
	return s && len == 6 && !strncmp(s, "<0x", 3) && s[5] == '>';
}

/* The text id would add after the context; special ids read as themselves. */
static void text_in_context(struct fe_lp *a, int32_t id, struct strbuf *out)
{
	tok_decode_after(a->tok, a->ctx, a->nctx, id, out);
	if (tok_is_special(a->tok, id))
		return;
	/* A byte-fallback piece inside a character: its raw byte, as the
	 * sampled token's entry has it. */
	int partial = a->nheld || (out->len >= 3 && !memcmp(out->buf + out->len - 3,
							     REPLACEMENT, 3));
	if (partial && is_byte_piece(a->tok, id)) {
		size_t len;
		const char *ts = tok_id_to_token(a->tok, id, &len);
		char hex[3] = { ts[3], ts[4], 0 };
		sb_reset(out);
		sb_addch(out, (int)strtoul(hex, NULL, 16));
	}
}

/* How many raw bytes a token brings when it is part of a split character:
 * one for a byte-fallback piece "<0xNN>", else one per character of its
 * token string (byte-level vocabularies map each byte to one character). */
static size_t raw_byte_count(const struct tok *tok, int32_t id)
{
	size_t len;
	const char *s = tok_id_to_token(tok, id, &len);
	if (!s)
		return 0;
	if (is_byte_piece(tok, id))
		return 1;
	return oai_utf8_chars(s, len);
}

/* Write entry e, whose text is s[0..n); the text offset moves past it
 * when advance is set. */
static void write_entry(struct fe_lp *a, const struct fe_lp_held *e, const char *s, size_t n,
			int advance)
{
	oai_logprobs_add(&a->out, s, n, e->logprob, &e->top, a->text_chars);
	if (!e->special && advance)
		a->text_chars += oai_utf8_chars(s, n);
}

/* Whether d[0..n) starts with the raw bytes of the held entries from the
 * first-th on: 0 when it does not (the detokenizer replaced an invalid byte
 * run with U+FFFD), 1 when it does or when some raw bytes are not known. */
static int held_match(const struct fe_lp *a, size_t first, const char *d, size_t n)
{
	size_t off = 0;
	for (size_t i = first; i < a->nheld; i++) {
		const struct fe_lp_held *e = &a->held[i];
		if (!e->nraw)
			return 1;
		if (e->nraw > n - off || memcmp(d + off, e->raw, e->nraw))
			return 0;
		off += e->nraw;
	}
	return 1;
}

/* Text arrived (delta, maybe empty at the end): the held entries take
 * their bytes from its front, in order; the last one, or `cur` when given,
 * takes the rest. */
static void release(struct fe_lp *a, const char *d, size_t n, const struct fe_lp_held *cur)
{
	size_t off = 0;
	if (a->nheld && !held_match(a, 0, d, n)) {
		/* An invalid run: the text has replacement characters where
		 * the held tokens' bytes were.  Each held token of the run
		 * still reads as its own raw bytes (as OpenAI writes them) and
		 * points into the replacement text; held tokens that begin the
		 * character after it, and the token after them, keep their own
		 * text. */
		if (cur)
			while (n - off >= 3 && !memcmp(d + off, REPLACEMENT, 3))
				off += 3;
		else
			off = n;
		size_t run = 1;
		while (run < a->nheld && !held_match(a, run, d + off, n - off))
			run++;
		size_t start = a->text_chars, chars = oai_utf8_chars(d, off);
		for (size_t i = 0; i < run; i++) {
			struct fe_lp_held *e = &a->held[i];
			a->text_chars = start + (i < chars ? i : chars);
			write_entry(a, e, e->raw, e->nraw, 0);
			sb_release(&e->top);
		}
		a->text_chars = start + chars;
		a->nheld -= run;
		memmove(a->held, a->held + run, a->nheld * sizeof(*a->held));
	}
	for (size_t i = 0; i < a->nheld; i++) {
		struct fe_lp_held *e = &a->held[i];
		size_t k = e->nbytes < n - off ? e->nbytes : n - off;
		if (!cur && i + 1 == a->nheld)
			k = n - off;
		write_entry(a, e, d + off, k, 1);
		off += k;
		sb_release(&e->top);
	}
	a->nheld = 0;
	if (cur)
		write_entry(a, cur, d + off, n - off, 1);
}

void fe_lp_token(struct fe_lp *a, int32_t id, const struct gen_logprob *lp, const char *delta,
		 size_t n)
{
	if (a->top_n < 0)
		return;
	struct fe_lp_held e = { .logprob = lp->logprob, .special = tok_is_special(a->tok, id) };
	struct strbuf t = STRBUF_INIT;
	int ntop = lp->ntop < a->top_n ? lp->ntop : a->top_n;
	sb_init(&e.top, 0);
	for (int k = 0; k < ntop; k++) {
		text_in_context(a, lp->top_ids[k], &t);
		oai_top_add(a->out.api, &e.top, t.buf, t.len, lp->top_lps[k]);
	}
	if (e.special) {
		/* skipped in the text: it reads as itself and moves nothing */
		sb_reset(&t);
		tok_decode(a->tok, &id, 1, 0, &t);
		write_entry(a, &e, t.buf, t.len, 1);
		sb_release(&e.top);
	} else if (!n && (text_in_context(a, id, &t), t.len)) {
		/* held back: part of a character still incomplete */
		e.nbytes = raw_byte_count(a->tok, id);
		/* a byte piece's raw byte, as text_in_context() gives it (other
		 * tokens' bytes are not known here) */
		if (is_byte_piece(a->tok, id) && t.len == 1) {
			e.raw[0] = t.buf[0];
			e.nraw = 1;
		}
		if (a->nheld == a->aheld) {
			a->aheld = a->aheld ? 2 * a->aheld : 4;
			a->held = xrealloc(a->held, a->aheld * sizeof(*a->held));
		}
		a->held[a->nheld++] = e;
	} else {
		release(a, delta, n, &e);
		sb_release(&e.top);
	}
	context_push(a, id);
	sb_release(&t);
}

void fe_lp_prompt(struct fe_lp *a, const int32_t *ids, size_t n, const struct gen_logprob *plps)
{
	if (a->top_n < 0)
		return;
	struct tok_stream *st = tok_stream_new(a->tok, 1);
	struct strbuf t = STRBUF_INIT;
	const struct gen_logprob first = { .logprob = NAN };
	size_t after = a->text_chars;	/* where the sampled tokens' text begins */

	a->text_chars = 0;
	a->nctx = 0;
	for (size_t i = 0; i < n; i++) {
		size_t before = t.len;
		tok_stream_put(st, ids[i], &t);
		fe_lp_token(a, ids[i], i ? &plps[i - 1] : &first, t.buf + before, t.len - before);
	}
	size_t before = t.len;
	tok_stream_flush(st, &t);
	fe_lp_end(a, t.buf + before, t.len - before);
	a->text_chars = after;
	tok_stream_free(st);
	sb_release(&t);
}

/* "id":{"logprob":L,"rank":R,"decoded_token":"text"} */
static void prompt_entry(const struct tok *tok, int32_t id, double logprob, long rank,
			 struct strbuf *t, struct strbuf *out)
{
	sb_reset(t);
	tok_decode(tok, &id, 1, 0, t);
	sb_addf(out, "\"%d\":{\"logprob\":%.9g,\"rank\":%ld,\"decoded_token\":", (int)id,
		logprob, rank);
	sb_add_json_str(out, t->buf, t->len);
	sb_addch(out, '}');
}

void fe_lp_prompt_json(const struct tok *tok, const int32_t *ids, size_t n,
		       const struct gen_logprob *plps, int top_n, struct strbuf *out)
{
	struct strbuf t = STRBUF_INIT;
	sb_adds(out, "[null");
	for (size_t i = 1; i < n; i++) {
		const struct gen_logprob *g = &plps[i - 1];
		sb_adds(out, ",{");
		prompt_entry(tok, ids[i], g->logprob, g->rank, &t, out);
		for (int k = 0; k < g->ntop && k < top_n; k++)
			if (g->top_ids[k] != ids[i]) {	/* the token itself is there already */
				sb_addch(out, ',');
				prompt_entry(tok, g->top_ids[k], g->top_lps[k], k + 1, &t, out);
			}
		sb_addch(out, '}');
	}
	sb_addch(out, ']');
	sb_release(&t);
}

void fe_lp_end(struct fe_lp *a, const char *tail, size_t n)
{
	if (a->nheld)
		release(a, tail, n, NULL);
}
