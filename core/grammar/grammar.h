/*
 * grammar.h - constrained decoding: grammars compiled to a byte-level
 * pushdown automaton, and the set of vocabulary tokens each decoding
 * state allows.
 *
 * Front ends (all compile to the same representation: rules whose
 * alternatives are sequences of byte sets and rule references):
 *   GRAMMAR_GBNF         llama.cpp's GBNF dialect (docs/structured-output.md)
 *   GRAMMAR_REGEX        a regex subset (classes, alternation, groups,
 *                        quantifiers incl. {m,n}), matched in full
 *   GRAMMAR_CHOICE       a JSON array of strings: exactly one of them
 *   GRAMMAR_JSON_SCHEMA  a JSON Schema (subset; unsupported keywords
 *                        refused by name)
 *   GRAMMAR_JSON_OBJECT  any JSON object
 *   GRAMMAR_TOOL_CALL    one hermes-style tool call, spec the JSON Schema
 *                        of the call object: the text is
 *                        "<tool_call>\n" CALL "\n</tool_call>"
 *   GRAMMAR_TOOL_CALLS   one or more of them, separated by "\n"
 * JSON text is generated compact with xgrammar's separators (", " and
 * ": "), so masks compare with xgrammar's any_whitespace=False.
 *
 * Matching: a state is a set of rule stacks (shared, hash-consed frames);
 * a byte advances every stack whose next element accepts it.  Left
 * recursion is refused at compile time.  The allowed tokens of a stack
 * are found by walking the vocabulary sorted by bytes (shared prefixes
 * advanced once, a dead prefix skips every token that starts with it,
 * steps memoised per state) and cached per grammar and vocabulary, keyed
 * by the stack's top frames: a stack met before costs a copy or OR of
 * bitmaps; for one deeper than the key,
 * the tokens that pop past it are walked against the real stack.
 *
 * Lifetimes: a struct grammar is immutable after compile apart from its
 * internal (locked) mask cache (for the first vocabulary it is used with;
 * masks over others are computed each time), reference counted, and may be shared by
 * any number of matchers on any threads.  A gvocab is immutable.  A
 * gmatch belongs to one thread at a time.
 * Errors: 0 / negative errno with err_msg() naming the problem.
 */
#ifndef DYN_GRAMMAR_H
#define DYN_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

struct tok;
struct grammar;
struct gvocab;
struct gmatch;

enum grammar_kind {
	GRAMMAR_GBNF, GRAMMAR_REGEX, GRAMMAR_CHOICE, GRAMMAR_JSON_SCHEMA,
	GRAMMAR_JSON_OBJECT, GRAMMAR_TOOL_CALL, GRAMMAR_TOOL_CALLS,
};
/* "grammar", "regex", "choice", "json", "json_object", "tool_call",
 * "tool_calls"; -1 if unknown. */
int grammar_kind_parse(const char *name);
const char *grammar_kind_name(enum grammar_kind k);

/* Size limits (bounded compile time and memory). */
#define GRAMMAR_MAX_SPEC (1u << 20)	/* bytes of spec text */
#define GRAMMAR_MAX_ELEMS (1u << 20)	/* compiled elements */

/* Compile spec[0..len).  flags: GRAMMAR_LENIENT ignores unsupported JSON
 * Schema keywords instead of refusing them. */
#define GRAMMAR_LENIENT 1
int grammar_compile(enum grammar_kind kind, const char *spec, size_t len, unsigned flags,
		    struct grammar **out);
/* A compiled grammar shared through a process-wide cache keyed by
 * (kind, flags, spec). */
int grammar_get(enum grammar_kind kind, const char *spec, size_t len, unsigned flags,
		struct grammar **out);
struct grammar *grammar_ref(struct grammar *g);
void grammar_unref(struct grammar *g);
/* A vocabulary: the bytes every id stands for.  Ids >= n_tok_ids, ids of
 * special tokens and empty tokens are never allowed; eos ids are allowed
 * exactly when the grammar accepts. */
struct gvocab *gvocab_new(int vocab_size, const char *const *bytes, const uint32_t *lens,
			  const int32_t *eos, int n_eos);
/* From a tokenizer (byte-level and SentencePiece tokens decoded to their
 * bytes mid-text). */
struct gvocab *gvocab_from_tok(const struct tok *tok, int vocab_size, const int32_t *eos,
			       int n_eos);
void gvocab_free(struct gvocab *v);

struct gmatch *gmatch_new(struct grammar *g, const struct gvocab *v);
void gmatch_free(struct gmatch *m);
/* Allowed next tokens as a bitmap of (vocab_size + 31) / 32 words.
 * Returns their number. */
int gmatch_mask(struct gmatch *m, uint32_t *bits);
/* The cold part of the next gmatch_mask, to run off the decoding thread:
 * NULL when the current state's masks are at hand already (gmatch_mask is
 * then cheap), else the stacks to walk the vocabulary for.  gprep_run
 * (any thread; it refers to the grammar and the vocabulary, not to m)
 * fills the grammar's cache with them; masks the cache cannot keep (it
 * is full, or another vocabulary's) stay in p until gmatch_adopt hands
 * them to m, on m's thread, for its next gmatch_mask. */
struct gprep *gmatch_prepare(struct gmatch *m);
void gprep_run(struct gprep *p);
void gmatch_adopt(struct gmatch *m, struct gprep *p);
void gprep_free(struct gprep *p);
/* Vocabulary walks gmatch_mask made on its caller's thread (tests). */
uint64_t gmatch_walks(const struct gmatch *m);
/* Advance on token id: 0, or -EINVAL when the grammar does not allow it
 * (the state is then unchanged).  An eos id is allowed when accepting and
 * ends the match. */
int gmatch_accept(struct gmatch *m, int32_t id);
/* Advance on raw bytes (tests): 0 or -EINVAL (state unchanged). */
int gmatch_accept_bytes(struct gmatch *m, const char *s, size_t len);
/* The text so far is a sentence of the grammar. */
int gmatch_accepting(const struct gmatch *m);
/* Accepting and no byte can follow: generation is complete. */
int gmatch_done(const struct gmatch *m);

#endif
