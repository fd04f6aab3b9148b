/*
 * build.c - the grammar builder: rules, literals, UTF-8 character
 * classes, repetition; checks (undefined rules, left recursion, empty
 * languages) and flattening into the matcher's form (grammar_int.h).
 */
#include "core/grammar/grammar_int.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void gb_init(struct gbuild *b)
{
	memset(b, 0, sizeof(*b));
}

void gseq_release(struct gseq *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void gb_release(struct gbuild *b)
{
	for (size_t i = 0; i < b->n_rules; i++) {
		for (size_t j = 0; j < b->rules[i].n_alts; j++)
			gseq_release(&b->rules[i].alts[j]);
		free(b->rules[i].alts);
		free(b->rules[i].name);
	}
	free(b->rules);
	free(b->sets);
	memset(b, 0, sizeof(*b));
}

void gseq_push(struct gseq *s, uint32_t type, uint32_t arg)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = (struct gelem){ type, arg };
}

static uint32_t add_rule(struct gbuild *b, char *name, int defined)
{
	if (b->n_rules == b->cap_rules) {
		b->cap_rules = b->cap_rules ? 2 * b->cap_rules : 16;
		b->rules = xrealloc(b->rules, b->cap_rules * sizeof(*b->rules));
	}
	struct grule *r = &b->rules[b->n_rules];
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->defined = defined;
	return (uint32_t)b->n_rules++;
}

uint32_t gb_rule_named(struct gbuild *b, const char *name, size_t len)
{
	for (size_t i = 0; i < b->n_rules; i++) {
		const char *n = b->rules[i].name;
		if (n && strlen(n) == len && !memcmp(n, name, len))
			return (uint32_t)i;
	}
	char *s = xmalloc(len + 1);
	memcpy(s, name, len);
	s[len] = 0;
	return add_rule(b, s, 0);
}

uint32_t gb_rule_new(struct gbuild *b)
{
	return add_rule(b, NULL, 1);
}

void gb_add_alt(struct gbuild *b, uint32_t rule, struct gseq *seq)
{
	struct grule *r = &b->rules[rule];
	if (r->n_alts == r->cap_alts) {
		r->cap_alts = r->cap_alts ? 2 * r->cap_alts : 4;
		r->alts = xrealloc(r->alts, r->cap_alts * sizeof(*r->alts));
	}
	b->n_elems += seq->n + 1;
	if (b->n_elems > GRAMMAR_MAX_ELEMS)
		b->too_big = 1;
	r->alts[r->n_alts++] = *seq;
	memset(seq, 0, sizeof(*seq));
}

static uint32_t add_set(struct gbuild *b, const uint8_t set[32])
{
	if (b->n_sets == b->cap_sets) {
		b->cap_sets = b->cap_sets ? 2 * b->cap_sets : 64;
		b->sets = xrealloc(b->sets, b->cap_sets * sizeof(*b->sets));
	}
	memcpy(b->sets[b->n_sets], set, 32);
	return (uint32_t)b->n_sets++;
}

static void push_range(struct gbuild *b, struct gseq *seq, unsigned lo, unsigned hi)
{
	uint8_t set[32] = { 0 };
	for (unsigned c = lo; c <= hi; c++)
		set[c >> 3] |= (uint8_t)(1u << (c & 7));
	gseq_push(seq, GE_BYTES, add_set(b, set));
}

void gb_literal(struct gbuild *b, struct gseq *seq, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		push_range(b, seq, (uint8_t)s[i], (uint8_t)s[i]);
}

static int utf8_enc(uint32_t cp, uint8_t *o)
{
	if (cp < 0x80) {
		o[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (uint8_t)(0xc0 | cp >> 6);
		o[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (uint8_t)(0xe0 | cp >> 12);
		o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (uint8_t)(0xf0 | cp >> 18);
	o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/* Alternatives of rule for the non-ASCII codepoints lo..hi: split until
 * each piece is a product of byte ranges (first at the encoded-length
 * boundaries, then where the low 6k bits are not full). */
static void utf8_range(struct gbuild *b, uint32_t rule, uint32_t lo, uint32_t hi)
{
	static const uint32_t lim[] = { 0x7f, 0x7ff, 0xffff };

	for (int i = 0; i < 3; i++)
		if (lo <= lim[i] && lim[i] < hi) {
			utf8_range(b, rule, lo, lim[i]);
			utf8_range(b, rule, lim[i] + 1, hi);
			return;
		}
	for (int i = 1; i < 4; i++) {
		uint32_t m = (1u << (6 * i)) - 1;
		if ((lo & ~m) != (hi & ~m)) {
			if (lo & m) {
				utf8_range(b, rule, lo, lo | m);
				utf8_range(b, rule, (lo | m) + 1, hi);
				return;
			}
			if ((hi & m) != m) {
				utf8_range(b, rule, lo, (hi & ~m) - 1);
				utf8_range(b, rule, hi & ~m, hi);
				return;
			}
		}
	}
	uint8_t a[4], z[4];
	int n = utf8_enc(lo, a);
	utf8_enc(hi, z);
	struct gseq s = { 0 };
	for (int i = 0; i < n; i++)
		push_range(b, &s, a[i], z[i]);
	gb_add_alt(b, rule, &s);
}

void gb_class(struct gbuild *b, struct gseq *seq, const uint32_t *lo, const uint32_t *hi,
	      size_t n)
{
	uint8_t ascii[32] = { 0 };
	int has_ascii = 0, has_wide = 0;

	for (size_t i = 0; i < n; i++) {
		for (uint32_t c = lo[i]; c <= hi[i] && c < 0x80; c++) {
			ascii[c >> 3] |= (uint8_t)(1u << (c & 7));
			has_ascii = 1;
		}
		if (hi[i] >= 0x80)
			has_wide = 1;
	}
	if (!has_wide) {
		gseq_push(seq, GE_BYTES, add_set(b, ascii));	/* may be empty */
		return;
	}
	uint32_t r = gb_rule_new(b);
	if (has_ascii) {
		struct gseq s = { 0 };
		gseq_push(&s, GE_BYTES, add_set(b, ascii));
		gb_add_alt(b, r, &s);
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t l = lo[i] < 0x80 ? 0x80 : lo[i], h = hi[i] > 0x10ffff ? 0x10ffff : hi[i];
		/* surrogates are not characters */
		if (l <= 0xdfff && h >= 0xd800) {
			if (l < 0xd800)
				utf8_range(b, r, l, 0xd7ff);
			if (h > 0xdfff)
				utf8_range(b, r, 0xe000, h);
		} else if (l <= h) {
			utf8_range(b, r, l, h);
		}
	}
	gseq_push(seq, GE_REF, r);
}

int gb_repeat(struct gbuild *b, struct gseq *seq, size_t start, long min, long max)
{
	if (min < 0 || (max >= 0 && max < min))
		return err_set(-EINVAL, "repetition {%ld,%ld}: bad bounds", min, max);
	if (min > 100000 || max > 100000)
		return err_set(-EINVAL, "repetition count above 100000");
	uint32_t x = gb_rule_new(b);
	struct gseq body = { 0 };
	for (size_t i = start; i < seq->n; i++)
		gseq_push(&body, seq->v[i].type, seq->v[i].arg);
	seq->n = start;
	gb_add_alt(b, x, &body);
	for (long i = 0; i < min && !b->too_big; i++)
		gseq_push(seq, GE_REF, x);
	struct gseq s = { 0 }, eps = { 0 };
	if (max < 0) {		/* star ::= x star | */
		uint32_t star = gb_rule_new(b);
		gseq_push(&s, GE_REF, x);
		gseq_push(&s, GE_REF, star);
		gb_add_alt(b, star, &s);
		gb_add_alt(b, star, &eps);
		gseq_push(seq, GE_REF, star);
		return 0;
	}
	/* opt_k ::= x opt_(k-1) | */
	uint32_t opt = UINT32_MAX;
	for (long k = min; k < max && !b->too_big; k++) {
		uint32_t o = gb_rule_new(b);
		gseq_push(&s, GE_REF, x);
		if (opt != UINT32_MAX)
			gseq_push(&s, GE_REF, opt);
		gb_add_alt(b, o, &s);
		gb_add_alt(b, o, &eps);
		opt = o;
	}
	if (opt != UINT32_MAX)
		gseq_push(seq, GE_REF, opt);
	return 0;
}

static int set_empty(const uint8_t *set)
{
	for (int i = 0; i < 32; i++)
		if (set[i])
			return 0;
	return 1;
}

/* Drop alternatives that derive no string (an empty class, a reference to
 * a rule without alternatives): the matcher may then assume that every
 * frame it pushes can complete. */
static void prune(struct gbuild *b, uint8_t *productive)
{
	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t r = 0; r < b->n_rules; r++) {
			if (productive[r])
				continue;
			for (size_t a = 0; a < b->rules[r].n_alts && !productive[r]; a++) {
				const struct gseq *s = &b->rules[r].alts[a];
				int ok = 1;
				for (size_t i = 0; i < s->n && ok; i++)
					ok = s->v[i].type == GE_BYTES ? !set_empty(b->sets[s->v[i].arg])
								    : productive[s->v[i].arg];
				if (ok)
					productive[r] = changed = 1;
			}
		}
	}
}

static int alt_ok(const struct gbuild *b, const struct gseq *s, const uint8_t *productive)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].type == GE_BYTES ? set_empty(b->sets[s->v[i].arg])
					     : !productive[s->v[i].arg])
			return 0;
	return 1;
}

/* Left recursion that grows the stack: a rule reaching itself through
 * leftmost references (after nullable prefixes) of which one is not in
 * tail position (a tail reference pushes no frame). */
static int left_recursion(const struct gbuild *b, const uint8_t *productive)
{
	size_t n = b->n_rules;
	uint8_t *nullable = xcalloc(n, 1);
	int rc = 0;

	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t r = 0; r < n; r++)
			for (size_t a = 0; a < b->rules[r].n_alts && !nullable[r]; a++) {
				const struct gseq *s = &b->rules[r].alts[a];
				size_t i = 0;
				while (i < s->n && s->v[i].type == GE_REF && nullable[s->v[i].arg])
					i++;
				if (i == s->n)
					nullable[r] = changed = 1;
			}
	}
	uint32_t *stamp = xcalloc(n, sizeof(uint32_t)), *stack = xmalloc(n * sizeof(uint32_t));
	uint32_t gen = 0;
	for (size_t u = 0; u < n && !rc; u++) {
		for (size_t a = 0; a < b->rules[u].n_alts && !rc; a++) {
			const struct gseq *s = &b->rules[u].alts[a];
			if (!alt_ok(b, s, productive))
				continue;
			for (size_t i = 0; i < s->n && s->v[i].type == GE_REF; i++) {
				uint32_t v = s->v[i].arg;
				if (i + 1 < s->n) {	/* non-tail: can v reach u? */
					size_t top = 0;
					stack[top++] = v;
					stamp[v] = ++gen;
					while (top && !rc) {
						uint32_t x = stack[--top];
						if (x == u) {
							rc = -1;
							break;
						}
						for (size_t c = 0; c < b->rules[x].n_alts; c++) {
							const struct gseq *t = &b->rules[x].alts[c];
							for (size_t j = 0; j < t->n && t->v[j].type == GE_REF; j++) {
								uint32_t y = t->v[j].arg;
								if (stamp[y] != gen) {
									stamp[y] = gen;
									stack[top++] = y;
								}
								if (!nullable[y])
									break;
							}
						}
					}
					if (rc)
						err_set(-EINVAL, "left recursion through rule '%s'",
							b->rules[u].name ? b->rules[u].name : "(group)");
				}
				if (!nullable[v] || rc)
					break;
			}
		}
	}
	free(stamp);
	free(stack);
	free(nullable);
	return rc ? -EINVAL : 0;
}

int gb_finish(struct gbuild *b, uint32_t root, struct grammar **out)
{
	if (b->too_big)
		return err_set(-E2BIG, "the grammar is too large (more than %u elements)",
			       GRAMMAR_MAX_ELEMS);
	for (size_t r = 0; r < b->n_rules; r++)
		if (!b->rules[r].defined)
			return err_set(-EINVAL, "rule '%s' is used but not defined", b->rules[r].name);
	uint8_t *productive = xcalloc(b->n_rules ? b->n_rules : 1, 1);
	prune(b, productive);
	if (!productive[root]) {
		free(productive);
		return err_set(-EINVAL, "the grammar matches no string");
	}
	if (left_recursion(b, productive) < 0) {
		free(productive);
		return -EINVAL;
	}
	struct grammar *g = xcalloc(1, sizeof(*g));
	size_t n_alts = 0, n_el = 0;
	for (size_t r = 0; r < b->n_rules; r++)
		for (size_t a = 0; a < b->rules[r].n_alts; a++)
			if (alt_ok(b, &b->rules[r].alts[a], productive)) {
				n_alts++;
				n_el += b->rules[r].alts[a].n + 1;
			}
	g->el = xmalloc((n_el + 1) * sizeof(*g->el));
	g->alt = xmalloc((n_alts + 1) * sizeof(uint32_t));
	g->rule_alt = xmalloc((b->n_rules + 1) * sizeof(uint32_t));
	g->n_rules = (uint32_t)b->n_rules;
	uint32_t na = 0, ne = 0;
	for (size_t r = 0; r < b->n_rules; r++) {
		g->rule_alt[r] = na;
		for (size_t a = 0; a < b->rules[r].n_alts; a++) {
			const struct gseq *s = &b->rules[r].alts[a];
			if (!alt_ok(b, s, productive))
				continue;
			g->alt[na++] = ne;
			for (size_t i = 0; i < s->n; i++)
				g->el[ne++] = s->v[i];
			g->el[ne++] = (struct gelem){ GE_END, (uint32_t)r };
		}
	}
	g->rule_alt[b->n_rules] = na;
	g->n_el = ne;
	g->sets = b->sets;
	b->sets = NULL;
	b->n_sets = b->cap_sets = 0;
	g->root = root;
	atomic_init(&g->refs, 1);
	pthread_mutex_init(&g->mu, NULL);
	free(productive);
	*out = g;
	return 0;
}
