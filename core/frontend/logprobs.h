/*
 * logprobs.h - lining up sampled tokens' logprobs with the text the
 * client sees, for OpenAI's logprobs objects (oai.h).
 *
 * Each sampled token's entry carries exactly the bytes it adds to the
 * text (its piece of the detokenizer's delta), so that the entries' bytes
 * join to the text, a leading space after a skipped special token
 * included.  A token that ends inside a character gets no delta of its
 * own (the detokenizer holds the character back): its entry waits until
 * the character completes, and then takes its raw bytes from the front of
 * that delta (as OpenAI does, its token reads "bytes:\xNN" when they are
 * not a whole character).  When the character never completes (an
 * invalid byte run, which the text shows as U+FFFD), each held byte piece
 * keeps its own raw byte and the replacement characters are text only.
 * Alternatives (top_logprobs) read as they would after the last few text
 * tokens.  text_offset counts characters of the choice's text.
 *
 * One struct fe_lp per choice being answered; it borrows the tokenizer
 * (which must outlive it).  Not thread-safe.
 */
#ifndef DYN_FRONTEND_LOGPROBS_H
#define DYN_FRONTEND_LOGPROBS_H

#include "core/frontend/oai.h"

#include <stddef.h>
#include <stdint.h>

struct tok;
struct gen_logprob;
struct fe_lp_held;

#define FE_LP_CONTEXT 6			/* text tokens the alternatives read after */

struct fe_lp {
	const struct tok *tok;
	int top_n;			/* alternatives asked for */
	struct oai_logprobs out;	/* the entries, ready for oai.h */
	size_t text_chars;		/* characters of the choice's text so far */
	int32_t ctx[FE_LP_CONTEXT];	/* the last text tokens */
	size_t nctx;
	struct fe_lp_held *held;	/* entries waiting for their bytes */
	size_t nheld, aheld;
};

/* top_n < 0: logprobs not asked for (entries are not gathered; the text
 * offset is still counted). */
void fe_lp_init(struct fe_lp *a, const struct tok *tok, enum oai_api api, int top_n);
/* Also on a zeroed struct fe_lp (never initialised). */
void fe_lp_release(struct fe_lp *a);
/* A new choice: its prompt's ids (the alternatives' first context) and
 * the characters of text it starts with (an echoed prompt). */
void fe_lp_begin(struct fe_lp *a, const int32_t *prompt, size_t n, size_t text_chars);
/* Token id was sampled with lp and added delta[0..n) to the text. */
void fe_lp_token(struct fe_lp *a, int32_t id, const struct gen_logprob *lp, const char *delta,
		 size_t n);
/* An echoed prompt's entries, before the sampled tokens': ids[0..n) with
 * the logprobs of ids[1..n) (plps, from the worker); the first reads null. */
void fe_lp_prompt(struct fe_lp *a, const int32_t *ids, size_t n, const struct gen_logprob *plps);
/* vLLM's prompt_logprobs list for ids[0..n): null for the first, then per
 * token {"id":{"logprob","rank","decoded_token"}} for it and its top_n
 * most likely alternatives (each token decoded alone). */
void fe_lp_prompt_json(const struct tok *tok, const int32_t *ids, size_t n,
		       const struct gen_logprob *plps, int top_n, struct strbuf *out);
/* The text ended with tail[0..n) (the detokenizer's flush, maybe empty):
 * entries still waiting take their bytes from it. */
void fe_lp_end(struct fe_lp *a, const char *tail, size_t n);

#endif
