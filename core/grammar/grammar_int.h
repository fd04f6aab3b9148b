/*
 * grammar_int.h - the grammar builder shared by the front ends, and the
 * compiled form the matcher reads.
 */
#ifndef DYN_GRAMMAR_INT_H
#define DYN_GRAMMAR_INT_H

#include "core/grammar/grammar.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum { GE_END, GE_BYTES, GE_REF };

struct gelem {
	uint32_t type;
	uint32_t arg;		/* GE_BYTES: set index; GE_REF: rule; GE_END: rule */
};

struct gseq {
	struct gelem *v;
	size_t n, cap;
};

struct grule {
	char *name;		/* NULL: anonymous */
	struct gseq *alts;
	size_t n_alts, cap_alts;
	int defined;
};

struct gbuild {
	struct grule *rules;
	size_t n_rules, cap_rules;
	uint8_t (*sets)[32];
	size_t n_sets, cap_sets;
	size_t n_elems;		/* budget check */
	int too_big;
};

void gb_init(struct gbuild *b);
void gb_release(struct gbuild *b);
/* The rule called name (created undefined on first use). */
uint32_t gb_rule_named(struct gbuild *b, const char *name, size_t len);
/* A new anonymous rule. */
uint32_t gb_rule_new(struct gbuild *b);
/* Add seq (taken over, left empty) as an alternative of rule. */
void gb_add_alt(struct gbuild *b, uint32_t rule, struct gseq *seq);
void gseq_push(struct gseq *s, uint32_t type, uint32_t arg);
void gseq_release(struct gseq *s);
/* Append the bytes of s as a literal. */
void gb_literal(struct gbuild *b, struct gseq *seq, const char *s, size_t len);
/* Append a character class: sorted, disjoint codepoint ranges lo[i]..hi[i]
 * (surrogates are dropped); an empty class matches nothing. */
void gb_class(struct gbuild *b, struct gseq *seq, const uint32_t *lo, const uint32_t *hi,
	      size_t n);
/* Repeat seq[start..n) min..max times (max < 0: unbounded), in place. */
int gb_repeat(struct gbuild *b, struct gseq *seq, size_t start, long min, long max);
/* Check and flatten into a grammar with the given root rule. */
int gb_finish(struct gbuild *b, uint32_t root, struct grammar **out);

/* Front ends: add the rules of text to b; *root gets the start rule. */
int gbnf_parse(struct gbuild *b, const char *text, size_t len, uint32_t *root);
int regex_parse(struct gbuild *b, const char *re, size_t len, uint32_t *root);
/* calls: 0 the schema's JSON; 1 one hermes tool call wrapping it; -1 one
 * or more (grammar.h GRAMMAR_TOOL_CALL/S). */
int schema_compile(struct gbuild *b, const char *json, size_t len, unsigned flags,
		   int calls, uint32_t *root);

struct gposmask;

struct grammar {
	struct gelem *el;
	uint32_t n_el;
	uint32_t *alt;		/* start element of each alternative */
	uint32_t *rule_alt;	/* rule r: alternatives rule_alt[r] .. rule_alt[r + 1] */
	uint32_t n_rules;
	uint8_t (*sets)[32];
	uint32_t root;
	atomic_int refs;
	pthread_mutex_t mu;	/* the mask cache */
	const struct gvocab *cache_vocab;	/* the one it is for */
	struct gposmask **cache;	/* by stack (match.c), open addressing */
	uint32_t cache_cap, n_cache;
};

void grammar_cache_release(struct grammar *g);

static inline int gset_has(const uint8_t *set, unsigned c)
{
	return set[c >> 3] >> (c & 7) & 1;
}

#endif
