/*
 * decoder.c - decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 * Strip, WordPiece and Sequence, with HF tokenizers' semantics.  Each works on the
 * list of token texts (HF's decode_chain); the result is their
 * concatenation.
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void tok_strlist_reset(struct strlist *l)
{
	sb_reset(&l->text);
	l->n = 0;
}

void tok_strlist_release(struct strlist *l)
{
	sb_release(&l->text);
	free(l->off);
	free(l->len);
	l->off = l->len = NULL;
	l->n = l->alloc = 0;
}

/* Start a new (empty) string; append its bytes to l->text, then
 * tok_strlist_end(). */
static void tok_strlist_begin(struct strlist *l)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? l->alloc * 2 : 32;
		l->off = xrealloc(l->off, l->alloc * sizeof(*l->off));
		l->len = xrealloc(l->len, l->alloc * sizeof(*l->len));
	}
	l->off[l->n] = (uint32_t)l->text.len;
	l->len[l->n] = 0;
}

static void tok_strlist_end(struct strlist *l)
{
	l->len[l->n] = (uint32_t)(l->text.len - l->off[l->n]);
	l->n++;
}

void tok_strlist_push(struct strlist *l, const char *s, size_t len)
{
	tok_strlist_begin(l);
	sb_add(&l->text, s, len);
	tok_strlist_end(l);
}

void tok_dec_free(struct dec *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nkids; i++)
		tok_dec_free(d->kids[i]);
	free(d->kids);
	free(d->pat);
	tok_re_free(&d->re);
	free(d->content);
	free(d);
}

int tok_dec_parse(const struct tj *v, const char *path, struct dec **out)
{
	const char *type, *s;
	size_t len;
	int rc;
	struct dec *d;

	*out = NULL;
	if (!v || v->type == TJ_NULL)
		return 0;
	rc = tok_jget_type(v, path, &type);
	if (rc < 0)
		return rc;
	d = xcalloc(1, sizeof(*d));
	if (!strcmp(type, "Sequence")) {
		const struct tj *list = tok_tj_get(v, "decoders");
		char sub[256], kp[256];
		d->type = DEC_SEQ;
		if (!list || list->type != TJ_ARR) {
			rc = err_set(-EINVAL, "%s.decoders: expected an array, found %s", path,
				     tok_tj_type_name(list));
			goto fail;
		}
		d->kids = xcalloc(list->len ? list->len : 1, sizeof(*d->kids));
		tok_jpath(sub, sizeof(sub), path, "decoders", 0);
		for (uint32_t i = 0; i < list->len; i++) {
			rc = tok_dec_parse(&list->u.kid[i], tok_jpath(kp, sizeof(kp), sub, NULL, i),
				       &d->kids[d->nkids]);
			if (rc < 0)
				goto fail;
			if (d->kids[d->nkids])
				d->nkids++;
		}
	} else if (!strcmp(type, "ByteLevel")) {
		d->type = DEC_BYTELEVEL;
	} else if (!strcmp(type, "Metaspace")) {
		int aps;
		d->type = DEC_METASPACE;
		if ((rc = tok_jget_char(v, "replacement", path, 0x2581, &d->ch)) < 0 ||
		    (rc = tok_jget_bool(v, "add_prefix_space", path, 1, &aps)) < 0 ||
		    (rc = tok_jget_str(v, "prepend_scheme", path, 0, &s, NULL)) < 0)
			goto fail;
		if (!s)
			d->prepend = aps;
		else if (!strcmp(s, "never"))
			d->prepend = 0;
		else if (!strcmp(s, "first") || !strcmp(s, "always"))
			d->prepend = 1;
		else {
			rc = err_set(-EINVAL, "%s.prepend_scheme: unknown scheme \"%s\"", path, s);
			goto fail;
		}
	} else if (!strcmp(type, "Replace")) {
		d->type = DEC_REPLACE;
		if ((rc = tok_jget_pattern(v, "pattern", path, &d->pat, &d->patlen, &d->re)) < 0 ||
		    (rc = tok_jget_str(v, "content", path, 1, &s, &len)) < 0)
			goto fail;
		d->content = xstrndup(s, len);
		d->clen = len;
	} else if (!strcmp(type, "ByteFallback")) {
		d->type = DEC_BYTEFALLBACK;
	} else if (!strcmp(type, "Fuse")) {
		d->type = DEC_FUSE;
	} else if (!strcmp(type, "Strip")) {
		long start, stop;
		d->type = DEC_STRIP;
		if ((rc = tok_jget_char(v, "content", path, ' ', &d->ch)) < 0 ||
		    (rc = tok_jget_int(v, "start", path, 0, 0, 1L << 20, &start)) < 0 ||
		    (rc = tok_jget_int(v, "stop", path, 0, 0, 1L << 20, &stop)) < 0)
			goto fail;
		d->start = (size_t)start;
		d->stop = (size_t)stop;
	} else if (!strcmp(type, "WordPiece")) {
		d->type = DEC_WORDPIECE;
		if ((rc = tok_jget_str(v, "prefix", path, 0, &s, &len)) < 0 ||
		    (rc = tok_jget_bool(v, "cleanup", path, 1, &d->cleanup)) < 0)
			goto fail;
		d->content = s ? xstrndup(s, len) : xstrdup("##");
		d->clen = s ? len : 2;
	} else {
		rc = err_set(-EINVAL, "%s: decoder type \"%s\" is not supported", path, type);
		goto fail;
	}
	*out = d;
	return 0;
fail:
	tok_dec_free(d);
	return rc;
}

/* "<0xXX>" -> the byte, or -1 (Rust's u8::from_str_radix accepts "+X"). */
int tok_dec_fallback_byte(const char *s, size_t n)
{
	if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
		return -1;
	int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
	if (s[3] == '+' && lo >= 0)
		return lo;
	if (hi < 0 || lo < 0)
		return -1;
	return hi * 16 + lo;
}

static void flush_bytes(struct strlist *out, struct strbuf *bytes)
{
	if (!bytes->len)
		return;
	if (tok_utf8_is_valid(bytes->buf, bytes->len)) {
		tok_strlist_push(out, bytes->buf, bytes->len);
	} else {
		for (size_t i = 0; i < bytes->len; i++)
			tok_strlist_push(out, UTF8_REPLACEMENT, 3);
	}
	sb_reset(bytes);
}

static int replace_one(const struct dec *d, const char *s, size_t n, struct strlist *out)
{
	size_t last = 0, ms, me;

	tok_strlist_begin(out);
	if (d->re.code) {
		struct tok_re_iter it;
		pcre2_match_data *md = pcre2_match_data_create(1, NULL);
		int rc;
		tok_re_iter_init(&it, &d->re, md, s, n);
		while (n && (rc = tok_re_next(&it, &ms, &me)) > 0) {
			sb_add(&out->text, s + last, ms - last);
			sb_add(&out->text, d->content, d->clen);
			last = me;
		}
		pcre2_match_data_free(md);
		if (n && rc < 0)
			return rc;
	} else if (d->patlen) {
		const char *m;
		while (last <= n && (m = memmem(s + last, n - last, d->pat, d->patlen))) {
			ms = (size_t)(m - s);
			sb_add(&out->text, s + last, ms - last);
			sb_add(&out->text, d->content, d->clen);
			last = ms + d->patlen;
		}
	}
	sb_add(&out->text, s + last, n - last);
	tok_strlist_end(out);
	return 0;
}

/* The WordPiece decoder's cleanup of one token: spaces before
 * punctuation and inside contractions removed, in HF's order. */
static void wp_cleanup(struct strbuf *t)
{
	static const char *const rules[][2] = {
		{ " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," },
		{ " ' ", "'" }, { " n't", "n't" }, { " 'm", "'m" },
		{ " do not", " don't" }, { " 's", "'s" }, { " 've", "'ve" },
		{ " 're", "'re" },
	};
	struct strbuf r = STRBUF_INIT;

	for (size_t k = 0; k < sizeof(rules) / sizeof(rules[0]); k++) {
		size_t plen = strlen(rules[k][0]), last = 0;
		const char *m;
		if (!memmem(t->buf, t->len, rules[k][0], plen))
			continue;
		sb_reset(&r);
		while ((m = memmem(t->buf + last, t->len - last, rules[k][0], plen))) {
			sb_add(&r, t->buf + last, (size_t)(m - t->buf) - last);
			sb_adds(&r, rules[k][1]);
			last = (size_t)(m - t->buf) + plen;
		}
		sb_add(&r, t->buf + last, t->len - last);
		sb_reset(t);
		sb_add(t, r.buf, r.len);
	}
	sb_release(&r);
}

/* One decoder step: in -> out (out reset first). */
static int step(const struct dec *d, struct strlist *in, struct strlist *out)
{
	tok_strlist_reset(out);
	switch (d->type) {
	case DEC_SEQ:
		return 0;	/* handled by tok_dec_apply */
	case DEC_BYTELEVEL: {
		struct strbuf raw = STRBUF_INIT;
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->text.buf + in->off[i];
			size_t n = in->len[i], start = raw.len;
			int ok = 1;
			for (size_t k = 0; k < n;) {
				uint32_t cp;
				k += tok_utf8_decode((const unsigned char *)s + k, &cp);
				int b = tok_char_byte(cp);
				if (b < 0) {
					ok = 0;
					break;
				}
				sb_addch(&raw, b);
			}
			if (!ok) {
				sb_setlen(&raw, start);
				sb_add(&raw, s, n);
			}
		}
		tok_strlist_begin(out);
		tok_utf8_sanitize(raw.buf, raw.len, &out->text);
		tok_strlist_end(out);
		sb_release(&raw);
		return 0;
	}
	case DEC_METASPACE:
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->text.buf + in->off[i];
			size_t n = in->len[i];
			tok_strlist_begin(out);
			for (size_t k = 0; k < n;) {
				uint32_t cp;
				size_t l = tok_utf8_decode((const unsigned char *)s + k, &cp);
				if (cp == d->ch) {
					if (!(i == 0 && d->prepend))
						sb_addch(&out->text, ' ');
				} else {
					sb_add(&out->text, s + k, l);
				}
				k += l;
			}
			tok_strlist_end(out);
		}
		return 0;
	case DEC_REPLACE:
		for (size_t i = 0; i < in->n; i++) {
			int rc = replace_one(d, in->text.buf + in->off[i], in->len[i], out);
			if (rc < 0)
				return rc;
		}
		return 0;
	case DEC_BYTEFALLBACK: {
		struct strbuf bytes = STRBUF_INIT;
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->text.buf + in->off[i];
			int b = tok_dec_fallback_byte(s, in->len[i]);
			if (b >= 0) {
				sb_addch(&bytes, b);
				continue;
			}
			flush_bytes(out, &bytes);
			tok_strlist_push(out, s, in->len[i]);
		}
		flush_bytes(out, &bytes);
		sb_release(&bytes);
		return 0;
	}
	case DEC_FUSE:
		tok_strlist_begin(out);
		for (size_t i = 0; i < in->n; i++)
			sb_add(&out->text, in->text.buf + in->off[i], in->len[i]);
		tok_strlist_end(out);
		return 0;
	case DEC_WORDPIECE: {
		/* a continuation loses its prefix, any other token but the
		 * first gets a space before it */
		struct strbuf t = STRBUF_INIT;
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->text.buf + in->off[i];
			size_t n = in->len[i];
			sb_reset(&t);
			if (i && n >= d->clen && !memcmp(s, d->content, d->clen)) {
				s += d->clen;
				n -= d->clen;
			} else if (i) {
				sb_addch(&t, ' ');
			}
			sb_add(&t, s, n);
			if (d->cleanup)
				wp_cleanup(&t);
			tok_strlist_push(out, t.buf, t.len);
		}
		sb_release(&t);
		return 0;
	}
	case DEC_STRIP:
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->text.buf + in->off[i];
			size_t n = in->len[i], b = 0, e = n;
			uint32_t cp;
			for (size_t k = 0; k < d->start && b < n; k++) {
				size_t l = tok_utf8_decode((const unsigned char *)s + b, &cp);
				if (cp != d->ch)
					break;
				b += l;
			}
			for (size_t k = 0; k < d->stop && e > b; k++) {
				size_t p = e - 1;
				while (p > b && ((unsigned char)s[p] & 0xC0) == 0x80)
					p--;
				tok_utf8_decode((const unsigned char *)s + p, &cp);
				if (cp != d->ch)
					break;
				e = p;
			}
			tok_strlist_push(out, s + b, e - b);
		}
		return 0;
	}
	return err_set(-EINVAL, "bad decoder");
}

/* The steps before the first ByteFallback, in order: does one of them
 * join tokens (ByteLevel, Fuse)?  Counts the ByteFallback steps. */
static void scan_bf(const struct dec *d, int *nbf, int *joins)
{
	if (d->type == DEC_SEQ) {
		for (size_t i = 0; i < d->nkids; i++)
			scan_bf(d->kids[i], nbf, joins);
	} else if (d->type == DEC_BYTEFALLBACK) {
		(*nbf)++;
	} else if (!*nbf && (d->type == DEC_BYTELEVEL || d->type == DEC_FUSE)) {
		*joins = 1;
	}
}

enum dec_bf_mode tok_dec_bf_mode(const struct dec *d)
{
	int nbf = 0, joins = 0;
	if (d)
		scan_bf(d, &nbf, &joins);
	if (!nbf)
		return DEC_BF_NONE;
	return joins || nbf > 1 ? DEC_BF_OPAQUE : DEC_BF_TOKENS;
}

/* Walk the chain in order: has a step joined the tokens (*joined), and
 * does a Strip with stop > 0 come after that? */
static int scan_end_strip(const struct dec *d, int *joined)
{
	if (d->type == DEC_SEQ) {
		for (size_t i = 0; i < d->nkids; i++)
			if (scan_end_strip(d->kids[i], joined))
				return 1;
		return 0;
	}
	if (d->type == DEC_FUSE || d->type == DEC_BYTELEVEL)
		*joined = 1;
	return d->type == DEC_STRIP && d->stop > 0 && *joined;
}

int tok_dec_strips_text_end(const struct dec *d)
{
	int joined = 0;
	return d ? scan_end_strip(d, &joined) : 0;
}

/* Apply the steps of d before the first ByteFallback; *stop is set once
 * it is reached. */
static int apply_until_bf(const struct dec *d, struct strlist *l, struct strlist *tmp, int *stop)
{
	if (*stop)
		return 0;
	if (d->type == DEC_SEQ) {
		for (size_t i = 0; i < d->nkids && !*stop; i++) {
			int rc = apply_until_bf(d->kids[i], l, tmp, stop);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	if (d->type == DEC_BYTEFALLBACK) {
		*stop = 1;
		return 0;
	}
	return tok_dec_apply(d, l, tmp);
}

int tok_dec_bf_byte(const struct dec *d, const char *s, size_t n, int first)
{
	struct strlist l = STRLIST_INIT, tmp = STRLIST_INIT;
	int stop = 0, b = -1;

	/* a token after the first: Metaspace treats index 0 differently */
	if (!first)
		tok_strlist_push(&l, "", 0);
	tok_strlist_push(&l, s, n);
	if (apply_until_bf(d, &l, &tmp, &stop) == 0 && l.n == (first ? 1u : 2u))
		b = tok_dec_fallback_byte(l.text.buf + l.off[l.n - 1], l.len[l.n - 1]);
	tok_strlist_release(&l);
	tok_strlist_release(&tmp);
	return b;
}

int tok_dec_apply(const struct dec *d, struct strlist *l, struct strlist *tmp)
{
	if (d->type == DEC_SEQ) {
		for (size_t i = 0; i < d->nkids; i++) {
			int rc = tok_dec_apply(d->kids[i], l, tmp);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	int rc = step(d, l, tmp);
	if (rc < 0)
		return rc;
	struct strlist t = *l;
	*l = *tmp;
	*tmp = t;
	return 0;
}
