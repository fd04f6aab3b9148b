/*
 * pretok.c - pre-tokenizers: Sequence, Split, ByteLevel, Metaspace,
 * Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer,
 * CharDelimiterSplit, with HF tokenizers' semantics.
 *
 * Every splitting pre-tokenizer reduces to the same two steps, as in HF's
 * NormalizedString::split: a pattern marks the text as a sequence of
 * match / non-match events covering it, and a behaviour (removed,
 * isolated, merged with previous/next, contiguous) turns events into
 * pieces.  Empty pieces are dropped.
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenization regex, used by ByteLevel with use_regex. */
static const char bytelevel_re[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void tok_pieces_push(struct pieces *p, uint32_t off, uint32_t len, int32_t id,
		 uint32_t at_start)
{
	if (p->n == p->alloc) {
		p->alloc = p->alloc ? p->alloc * 2 : 64;
		p->v = xrealloc(p->v, p->alloc * sizeof(*p->v));
	}
	p->v[p->n++] = (struct piece){ off, len, id, at_start };
}

void tok_pretok_free(struct pretok *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nkids; i++)
		tok_pretok_free(p->kids[i]);
	free(p->kids);
	tok_re_free(&p->re);
	free(p->lit);
	free(p);
}

static int parse_behavior(const struct tj *v, const char *path, enum split_behavior def,
			  enum split_behavior *out)
{
	static const char *const names[] = {
		"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous",
	};
	const char *s;
	int rc = tok_jget_str(v, "behavior", path, 0, &s, NULL);
	if (rc < 0)
		return rc;
	if (!s) {
		*out = def;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum split_behavior)i;
			return 0;
		}
	}
	return err_set(-EINVAL, "%s.behavior: unknown split behavior \"%s\"", path, s);
}

int tok_pretok_parse(const struct tj *v, const char *path, struct pretok **out)
{
	const char *type, *s;
	size_t len;
	int rc;
	struct pretok *p;

	*out = NULL;
	if (!v || v->type == TJ_NULL)
		return 0;
	rc = tok_jget_type(v, path, &type);
	if (rc < 0)
		return rc;
	p = xcalloc(1, sizeof(*p));
	if (!strcmp(type, "Sequence")) {
		const struct tj *list = tok_tj_get(v, "pretokenizers");
		char sub[256], kp[256];
		p->type = PRE_SEQ;
		if (!list || list->type != TJ_ARR) {
			rc = err_set(-EINVAL, "%s.pretokenizers: expected an array, found %s",
				     path, tok_tj_type_name(list));
			goto fail;
		}
		p->kids = xcalloc(list->len ? list->len : 1, sizeof(*p->kids));
		tok_jpath(sub, sizeof(sub), path, "pretokenizers", 0);
		for (uint32_t i = 0; i < list->len; i++) {
			rc = tok_pretok_parse(&list->u.kid[i], tok_jpath(kp, sizeof(kp), sub, NULL, i),
					  &p->kids[p->nkids]);
			if (rc < 0)
				goto fail;
			if (p->kids[p->nkids])
				p->nkids++;
		}
	} else if (!strcmp(type, "Split")) {
		char *lit;
		size_t litlen;
		p->type = PRE_SPLIT;
		rc = tok_jget_pattern(v, "pattern", path, &lit, &litlen, &p->re);
		if (rc < 0)
			goto fail;
		if (lit) {
			/* HF compiles a String pattern as an escaped regex */
			rc = tok_re_compile(&p->re, lit, litlen, 1);
			free(lit);
			if (rc < 0)
				goto fail;
		}
		if ((rc = parse_behavior(v, path, SPLIT_ISOLATED, &p->behavior)) < 0 ||
		    (rc = tok_jget_bool(v, "invert", path, 0, &p->invert)) < 0)
			goto fail;
		if (!tok_tj_get(v, "behavior")) {
			rc = err_set(-EINVAL, "%s: missing \"behavior\"", path);
			goto fail;
		}
	} else if (!strcmp(type, "ByteLevel")) {
		p->type = PRE_BYTELEVEL;
		if ((rc = tok_jget_bool(v, "add_prefix_space", path, 1, &p->add_prefix_space)) < 0 ||
		    (rc = tok_jget_bool(v, "use_regex", path, 1, &p->use_regex)) < 0)
			goto fail;
		if (p->use_regex &&
		    (rc = tok_re_compile(&p->re, bytelevel_re, sizeof(bytelevel_re) - 1, 0)) < 0)
			goto fail;
	} else if (!strcmp(type, "Metaspace")) {
		int aps;
		p->type = PRE_METASPACE;
		if ((rc = tok_jget_char(v, "replacement", path, 0x2581, &p->repl)) < 0 ||
		    (rc = tok_jget_bool(v, "add_prefix_space", path, 1, &aps)) < 0 ||
		    (rc = tok_jget_bool(v, "split", path, 1, &p->split)) < 0 ||
		    (rc = tok_jget_str(v, "prepend_scheme", path, 0, &s, NULL)) < 0)
			goto fail;
		if (!s)
			p->prepend = aps ? 2 : 0;
		else if (!strcmp(s, "never"))
			p->prepend = 0;
		else if (!strcmp(s, "first"))
			p->prepend = 1;
		else if (!strcmp(s, "always"))
			p->prepend = 2;
		else {
			rc = err_set(-EINVAL, "%s.prepend_scheme: unknown scheme \"%s\"", path, s);
			goto fail;
		}
	} else if (!strcmp(type, "Digits")) {
		p->type = PRE_DIGITS;
		if ((rc = tok_jget_bool(v, "individual_digits", path, 0, &p->individual_digits)) < 0)
			goto fail;
	} else if (!strcmp(type, "Punctuation")) {
		p->type = PRE_PUNCT;
		if ((rc = parse_behavior(v, path, SPLIT_ISOLATED, &p->behavior)) < 0)
			goto fail;
	} else if (!strcmp(type, "Whitespace")) {
		p->type = PRE_WHITESPACE;
	} else if (!strcmp(type, "WhitespaceSplit")) {
		p->type = PRE_WSPLIT;
	} else if (!strcmp(type, "BertPreTokenizer")) {
		p->type = PRE_BERT;
	} else if (!strcmp(type, "CharDelimiterSplit")) {
		p->type = PRE_CHARDELIM;
		if ((rc = tok_jget_str(v, "delimiter", path, 1, &s, &len)) < 0 ||
		    (rc = tok_jget_char(v, "delimiter", path, 0, &p->repl)) < 0)
			goto fail;
	} else {
		rc = err_set(-EINVAL, "%s: pre-tokenizer type \"%s\" is not supported", path, type);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	tok_pretok_free(p);
	return rc;
}

/* ---- events and behaviours ---------------------------------------------- */

struct ev {
	uint32_t s, e;
	uint32_t m;
};

struct evs {
	struct ev *v;
	size_t n, alloc;
};

static void ev_push(struct evs *e, size_t s, size_t end, int m)
{
	if (e->n == e->alloc) {
		e->alloc = e->alloc ? e->alloc * 2 : 64;
		e->v = xrealloc(e->v, e->alloc * sizeof(*e->v));
	}
	e->v[e->n++] = (struct ev){ (uint32_t)s, (uint32_t)end, (uint32_t)m };
}

/* Turn events (offsets relative to piece p) into pieces. */
static void apply_behavior(const struct evs *ev, enum split_behavior b, int invert,
			   const struct piece *p, struct pieces *out)
{
	uint32_t ps = 0, pe = 0;
	int have = 0, prev = 0;

#define EMIT(s_, e_) do { if ((e_) > (s_)) \
	tok_pieces_push(out, p->off + (s_), (e_) - (s_), -1, p->at_start && (s_) == 0); } while (0)

	for (size_t i = 0; i < ev->n; i++) {
		const struct ev *x = &ev->v[i];
		int m = invert ? !x->m : (int)x->m;
		switch (b) {
		case SPLIT_ISOLATED:
			EMIT(x->s, x->e);
			break;
		case SPLIT_REMOVED:
			if (!m)
				EMIT(x->s, x->e);
			break;
		case SPLIT_CONTIGUOUS:
			if (have && m == prev) {
				pe = x->e;
			} else {
				if (have)
					EMIT(ps, pe);
				ps = x->s;
				pe = x->e;
				have = 1;
			}
			break;
		case SPLIT_MERGED_PREV:
			if (have && m && !prev) {
				pe = x->e;
			} else {
				if (have)
					EMIT(ps, pe);
				ps = x->s;
				pe = x->e;
				have = 1;
			}
			break;
		case SPLIT_MERGED_NEXT: {
			/* a match joins the piece after it when that one is not a match */
			int next_m = 1;
			if (i + 1 < ev->n)
				next_m = invert ? !ev->v[i + 1].m : (int)ev->v[i + 1].m;
			if (!have) {
				ps = x->s;
				have = 1;
			}
			pe = x->e;
			if (!(m && i + 1 < ev->n && !next_m)) {
				EMIT(ps, pe);
				have = 0;
			}
			break;
		}
		}
		prev = m;
	}
	if (have && (b == SPLIT_CONTIGUOUS || b == SPLIT_MERGED_PREV || b == SPLIT_MERGED_NEXT))
		EMIT(ps, pe);
#undef EMIT
}

static int regex_events(const struct tok_re *re, pcre2_match_data *md, const char *s,
			size_t len, struct evs *ev)
{
	struct tok_re_iter it;
	size_t prev = 0, ms, me;
	int rc;

	ev->n = 0;
	if (!len) {
		ev_push(ev, 0, 0, 0);
		return 0;
	}
	tok_re_iter_init(&it, re, md, s, len);
	while ((rc = tok_re_next(&it, &ms, &me)) > 0) {
		if (prev != ms)
			ev_push(ev, prev, ms, 0);
		ev_push(ev, ms, me, 1);
		prev = me;
	}
	if (rc < 0)
		return rc;
	if (prev != len)
		ev_push(ev, prev, len, 0);
	return 0;
}

enum pred { PRED_WS, PRED_PUNCT, PRED_DIGIT, PRED_CHAR };

static void char_events(enum pred pred, uint32_t ch, const char *s, size_t len,
			struct evs *ev)
{
	size_t last = 0;

	ev->n = 0;
	if (!len) {
		ev_push(ev, 0, 0, 0);
		return;
	}
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t l = tok_utf8_decode((const unsigned char *)s + i, &cp);
		int m;
		switch (pred) {
		case PRED_WS: m = tok_uni_is_whitespace(cp); break;
		case PRED_PUNCT: m = tok_uni_is_punct(cp); break;
		case PRED_DIGIT: m = tok_uni_is_numeric(cp); break;
		default: m = cp == ch; break;
		}
		if (m) {
			if (last < i)
				ev_push(ev, last, i, 0);
			ev_push(ev, i, i + l, 1);
			last = i + l;
		}
		i += l;
	}
	if (last < len)
		ev_push(ev, last, len, 0);
}

/* HF's Whitespace: the matches of \\w+|[^\\w\\s]+ with the regex crate's
 * classes (\\w: Alphabetic, M, Nd, Pc, Join_Control; \\s: White_Space),
 * i.e. runs of word characters and runs of other non-space characters. */
static void whitespace_pieces(const char *s, const struct piece *p, struct pieces *out)
{
	size_t start = 0;
	int cls = 0;	/* class of the current run: 0 space, 1 word, 2 other */

	for (size_t i = 0; i <= p->len;) {
		uint32_t cp = 0;
		size_t l = 1;
		int c = 0;
		if (i < p->len) {
			l = tok_utf8_decode((const unsigned char *)s + i, &cp);
			c = tok_uni_is_whitespace(cp) ? 0 : tok_uni_is_word(cp) ? 1 : 2;
		}
		if (c != cls || i == p->len) {
			if (cls && i > start)
				tok_pieces_push(out, p->off + (uint32_t)start, (uint32_t)(i - start), -1,
						p->at_start && start == 0);
			start = i;
			cls = c;
		}
		i += l;
	}
}

/* ---- text transforms ------------------------------------------------------ */

/* Map piece p's bytes to GPT-2's byte characters (new text in the arena). */
static void bytelevel_map(struct strbuf *arena, struct piece *p)
{
	sb_grow(arena, (size_t)p->len * 2);
	const unsigned char *src = (const unsigned char *)arena->buf + p->off;
	char *dst = arena->buf + arena->len, *d = dst;
	for (uint32_t i = 0; i < p->len; i++) {
		unsigned b = src[i];
		d[0] = tok_byte_utf8_tab[b][0];
		d[1] = tok_byte_utf8_tab[b][1];
		d += tok_byte_utf8_len_tab[b];
	}
	p->off = (uint32_t)arena->len;
	p->len = (uint32_t)(d - dst);
	sb_setlen(arena, arena->len + p->len);
}

/* Metaspace: spaces become the replacement, which may be prepended. */
static void metaspace_map(const struct pretok *pt, struct strbuf *arena, struct piece *p)
{
	char rep[4];
	size_t rl = tok_utf8_encode(pt->repl, rep);
	size_t start = arena->len;

	sb_grow(arena, (size_t)p->len * rl + rl);
	const char *src = arena->buf + p->off;
	char *d = arena->buf + arena->len;
	int prepend = 0;
	if (pt->prepend == 2 || (pt->prepend == 1 && p->at_start)) {
		/* unless the text (after replacing) already starts with it */
		int starts = p->len >= rl && !memcmp(src, rep, rl);
		if (p->len && src[0] == ' ')
			starts = 1;
		prepend = !starts;
	}
	if (prepend) {
		memcpy(d, rep, rl);
		d += rl;
	}
	for (uint32_t i = 0; i < p->len; i++) {
		if (src[i] == ' ') {
			memcpy(d, rep, rl);
			d += rl;
		} else {
			*d++ = src[i];
		}
	}
	p->off = (uint32_t)start;
	p->len = (uint32_t)(d - (arena->buf + start));
	sb_setlen(arena, start + p->len);
}

/* ---- applying ------------------------------------------------------------- */

static int apply_step(const struct pretok *pt, struct strbuf *arena, struct pieces *in,
		      struct pieces *out, pcre2_match_data *md, struct evs *ev)
{
	out->n = 0;
	for (size_t i = 0; i < in->n; i++) {
		struct piece p = in->v[i];
		int rc = 0;
		if (p.id >= 0) {
			tok_pieces_push(out, p.off, p.len, p.id, p.at_start);
			continue;
		}
		switch (pt->type) {
		case PRE_SPLIT:
			rc = regex_events(&pt->re, md, arena->buf + p.off, p.len, ev);
			if (rc < 0)
				return rc;
			apply_behavior(ev, pt->behavior, pt->invert, &p, out);
			break;
		case PRE_WHITESPACE:
			whitespace_pieces(arena->buf + p.off, &p, out);
			break;
		case PRE_BYTELEVEL:
			if (pt->add_prefix_space && (p.len == 0 || arena->buf[p.off] != ' ')) {
				size_t start = arena->len;
				sb_grow(arena, (size_t)p.len + 1);
				sb_addch(arena, ' ');
				sb_add(arena, arena->buf + p.off, p.len);
				p.off = (uint32_t)start;
				p.len++;
			}
			if (pt->use_regex) {
				size_t first = out->n;
				rc = regex_events(&pt->re, md, arena->buf + p.off, p.len, ev);
				if (rc < 0)
					return rc;
				apply_behavior(ev, SPLIT_ISOLATED, 0, &p, out);
				for (size_t k = first; k < out->n; k++)
					bytelevel_map(arena, &out->v[k]);
			} else {
				bytelevel_map(arena, &p);
				tok_pieces_push(out, p.off, p.len, -1, p.at_start);
			}
			break;
		case PRE_METASPACE:
			metaspace_map(pt, arena, &p);
			if (pt->split) {
				char_events(PRED_CHAR, pt->repl, arena->buf + p.off, p.len, ev);
				apply_behavior(ev, SPLIT_MERGED_NEXT, 0, &p, out);
			} else {
				tok_pieces_push(out, p.off, p.len, -1, p.at_start);
			}
			break;
		case PRE_DIGITS:
			char_events(PRED_DIGIT, 0, arena->buf + p.off, p.len, ev);
			apply_behavior(ev, pt->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS,
				       0, &p, out);
			break;
		case PRE_PUNCT:
			char_events(PRED_PUNCT, 0, arena->buf + p.off, p.len, ev);
			apply_behavior(ev, pt->behavior, 0, &p, out);
			break;
		case PRE_WSPLIT:
			char_events(PRED_WS, 0, arena->buf + p.off, p.len, ev);
			apply_behavior(ev, SPLIT_REMOVED, 0, &p, out);
			break;
		case PRE_CHARDELIM:
			char_events(PRED_CHAR, pt->repl, arena->buf + p.off, p.len, ev);
			apply_behavior(ev, SPLIT_REMOVED, 0, &p, out);
			break;
		case PRE_BERT: {
			struct pieces tmp = { 0 };
			char_events(PRED_WS, 0, arena->buf + p.off, p.len, ev);
			apply_behavior(ev, SPLIT_REMOVED, 0, &p, &tmp);
			for (size_t k = 0; k < tmp.n; k++) {
				char_events(PRED_PUNCT, 0, arena->buf + tmp.v[k].off, tmp.v[k].len, ev);
				apply_behavior(ev, SPLIT_ISOLATED, 0, &tmp.v[k], out);
			}
			free(tmp.v);
			break;
		}
		case PRE_SEQ:
			break;
		}
	}
	return 0;
}

static int apply(const struct pretok *pt, struct strbuf *arena, struct pieces *in,
		 struct pieces *tmp, pcre2_match_data *md, struct evs *ev)
{
	if (pt->type == PRE_SEQ) {
		for (size_t i = 0; i < pt->nkids; i++) {
			int rc = apply(pt->kids[i], arena, in, tmp, md, ev);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	int rc = apply_step(pt, arena, in, tmp, md, ev);
	if (rc < 0)
		return rc;
	if (arena->len > (1u << 31))	/* piece offsets are 32-bit */
		return err_set(-E2BIG, "text too long to tokenize");
	struct pieces t = *in;
	*in = *tmp;
	*tmp = t;
	return 0;
}

int tok_pretok_apply(const struct pretok *pt, struct strbuf *arena, struct pieces *in,
		 struct pieces *tmp, pcre2_match_data *md)
{
	struct evs ev = { 0 };
	int rc = 0;
	if (pt)
		rc = apply(pt, arena, in, tmp, md, &ev);
	free(ev.v);
	return rc;
}
