/*
 * norm.c - normalizers: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip,
 * Replace, Prepend, BertNormalizer, with HF tokenizers' semantics.
 *
 * Unicode normalization uses utf8proc (its tables are Unicode 15; HF's
 * unicode-normalization crate may be newer, which matters only for
 * characters assigned since).
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void tok_norm_free(struct norm *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		tok_norm_free(n->kids[i]);
	free(n->kids);
	free(n->pat);
	tok_re_free(&n->re);
	free(n->content);
	free(n);
}

int tok_norm_parse(const struct tj *v, const char *path, struct norm **out)
{
	const char *type, *s;
	size_t len;
	char sub[256];
	int rc;
	struct norm *n;

	*out = NULL;
	if (!v || v->type == TJ_NULL)
		return 0;
	rc = tok_jget_type(v, path, &type);
	if (rc < 0)
		return rc;
	n = xcalloc(1, sizeof(*n));
	if (!strcmp(type, "Sequence")) {
		const struct tj *list = tok_tj_get(v, "normalizers");
		n->type = NORM_SEQ;
		if (!list || list->type != TJ_ARR) {
			rc = err_set(-EINVAL, "%s.normalizers: expected an array, found %s",
				     path, tok_tj_type_name(list));
			goto fail;
		}
		n->kids = xcalloc(list->len ? list->len : 1, sizeof(*n->kids));
		for (uint32_t i = 0; i < list->len; i++) {
			char kp[256];
			tok_jpath(sub, sizeof(sub), path, "normalizers", 0);
			tok_jpath(kp, sizeof(kp), sub, NULL, i);
			rc = tok_norm_parse(&list->u.kid[i], kp, &n->kids[n->nkids]);
			if (rc < 0)
				goto fail;
			if (n->kids[n->nkids])
				n->nkids++;
		}
	} else if (!strcmp(type, "NFC")) {
		n->type = NORM_NFC;
	} else if (!strcmp(type, "NFD")) {
		n->type = NORM_NFD;
	} else if (!strcmp(type, "NFKC")) {
		n->type = NORM_NFKC;
	} else if (!strcmp(type, "NFKD")) {
		n->type = NORM_NFKD;
	} else if (!strcmp(type, "Lowercase")) {
		n->type = NORM_LOWER;
	} else if (!strcmp(type, "Strip")) {
		n->type = NORM_STRIP;
		if ((rc = tok_jget_bool(v, "strip_left", path, 1, &n->left)) < 0 ||
		    (rc = tok_jget_bool(v, "strip_right", path, 1, &n->right)) < 0)
			goto fail;
	} else if (!strcmp(type, "Replace")) {
		n->type = NORM_REPLACE;
		rc = tok_jget_pattern(v, "pattern", path, &n->pat, &n->patlen, &n->re);
		if (rc < 0)
			goto fail;
		rc = tok_jget_str(v, "content", path, 1, &s, &len);
		if (rc < 0)
			goto fail;
		n->content = xstrndup(s, len);
		n->clen = len;
	} else if (!strcmp(type, "Prepend")) {
		n->type = NORM_PREPEND;
		rc = tok_jget_str(v, "prepend", path, 1, &s, &len);
		if (rc < 0)
			goto fail;
		n->content = xstrndup(s, len);
		n->clen = len;
	} else if (!strcmp(type, "BertNormalizer")) {
		n->type = NORM_BERT;
		if ((rc = tok_jget_bool(v, "clean_text", path, 1, &n->clean_text)) < 0 ||
		    (rc = tok_jget_bool(v, "handle_chinese_chars", path, 1, &n->chinese)) < 0 ||
		    (rc = tok_jget_bool(v, "lowercase", path, 1, &n->lowercase)) < 0 ||
		    /* null: strip accents when lowercasing */
		    (rc = tok_jget_bool(v, "strip_accents", path, n->lowercase,
					&n->strip_accents)) < 0)
			goto fail;
	} else {
		rc = err_set(-EINVAL, "%s: normalizer type \"%s\" is not supported", path, type);
		goto fail;
	}
	*out = n;
	return 0;
fail:
	tok_norm_free(n);
	return rc;
}

static int is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

/* NFC leaves text below U+0300 alone (no combining marks to compose). */
static int below_0300(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0xCC)
			return 0;
	return 1;
}

static int unicode_norm(enum norm_type t, const char *in, size_t len, struct strbuf *out)
{
	int opts = UTF8PROC_STABLE;
	utf8proc_uint8_t *res = NULL;

	if (is_ascii(in, len) || (t == NORM_NFC && below_0300(in, len))) {
		sb_add(out, in, len);
		return 0;
	}
	switch (t) {
	case NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
	case NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
	case NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
	default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
	}
	utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)in,
					  (utf8proc_ssize_t)len, &res, opts);
	if (n < 0)
		return err_set(-EINVAL, "unicode normalization failed: %s",
			       utf8proc_errmsg(n));
	sb_add(out, res, (size_t)n);
	free(res);
	return 0;
}

/* Find the next literal match of pat at or after pos. */
static const char *find_lit(const char *s, size_t len, size_t pos, const char *pat,
			    size_t plen)
{
	if (!plen || pos > len)
		return NULL;
	if (plen == 1)
		return memchr(s + pos, pat[0], len - pos);
	return memmem(s + pos, len - pos, pat, plen);
}

static int replace(const struct norm *n, const char *in, size_t len,
		   struct strbuf *out, int *at_start, pcre2_match_data *md)
{
	size_t last = 0, ms, me;

	if (n->re.code) {
		struct tok_re_iter it;
		int rc;
		tok_re_iter_init(&it, &n->re, md, in, len);
		while ((rc = tok_re_next(&it, &ms, &me)) > 0) {
			if (ms == 0 && me > 0 && n->clen == 0)
				*at_start = 0;
			sb_add(out, in + last, ms - last);
			sb_add(out, n->content, n->clen);
			last = me;
		}
		if (rc < 0)
			return rc;
	} else {
		const char *m;
		while ((m = find_lit(in, len, last, n->pat, n->patlen))) {
			ms = (size_t)(m - in);
			if (ms == 0 && n->clen == 0)
				*at_start = 0;
			sb_add(out, in + last, ms - last);
			sb_add(out, n->content, n->clen);
			last = ms + n->patlen;
		}
	}
	sb_add(out, in + last, len - last);
	return 0;
}

/* The CJK ideograph blocks BERT puts spaces around. */
static int is_chinese(uint32_t cp)
{
	return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
	       (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
	       (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
	       (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* BertNormalizer: drop NUL, U+FFFD and control characters and turn
 * whitespace into spaces; space out CJK ideographs; NFD and drop
 * nonspacing marks; lowercase. */
static int bert_norm(const struct norm *n, const char *in, size_t len, struct strbuf *out)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	char buf[4];
	int rc = 0;

	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t l = tok_utf8_decode((const unsigned char *)in + i, &cp);
		int tnr = cp == '\t' || cp == '\n' || cp == '\r';
		i += l;
		if (n->clean_text && !tnr && (cp == 0xFFFD || tok_uni_is_other(cp)))
			continue;
		if (n->clean_text && (tnr || tok_uni_is_whitespace(cp)))
			sb_addch(&a, ' ');
		else if (n->chinese && is_chinese(cp)) {
			sb_addch(&a, ' ');
			sb_add(&a, buf, tok_utf8_encode(cp, buf));
			sb_addch(&a, ' ');
		} else
			sb_add(&a, in + i - l, l);
	}
	if (n->strip_accents) {
		rc = unicode_norm(NORM_NFD, a.buf, a.len, &b);
		sb_reset(&a);
		for (size_t i = 0; rc == 0 && i < b.len;) {
			uint32_t cp;
			size_t l = tok_utf8_decode((const unsigned char *)b.buf + i, &cp);
			if (!tok_uni_is_mark_nonspacing(cp))
				sb_add(&a, b.buf + i, l);
			i += l;
		}
	}
	for (size_t i = 0; rc == 0 && i < a.len;) {
		uint32_t cp;
		size_t l = tok_utf8_decode((const unsigned char *)a.buf + i, &cp);
		if (n->lowercase)
			tok_uni_lower(cp, out);
		else
			sb_add(out, a.buf + i, l);
		i += l;
	}
	sb_release(&a);
	sb_release(&b);
	return rc;
}

static int apply_one(const struct norm *n, const char *in, size_t len,
		     struct strbuf *out, int *at_start, pcre2_match_data *md)
{
	switch (n->type) {
	case NORM_SEQ: {
		struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
		int rc = 0;
		sb_add(&a, in, len);
		for (size_t i = 0; i < n->nkids && rc == 0; i++) {
			sb_reset(&b);
			rc = apply_one(n->kids[i], a.buf, a.len, &b, at_start, md);
			struct strbuf t = a;
			a = b;
			b = t;
		}
		if (rc == 0)
			sb_add(out, a.buf, a.len);
		sb_release(&a);
		sb_release(&b);
		return rc;
	}
	case NORM_NFC:
	case NORM_NFD:
	case NORM_NFKC:
	case NORM_NFKD:
		return unicode_norm(n->type, in, len, out);
	case NORM_LOWER:
		for (size_t i = 0; i < len;) {
			uint32_t cp;
			i += tok_utf8_decode((const unsigned char *)in + i, &cp);
			tok_uni_lower(cp, out);
		}
		return 0;
	case NORM_STRIP: {
		size_t s = 0, e = len;
		if (n->left) {
			while (s < e) {
				uint32_t cp;
				size_t l = tok_utf8_decode((const unsigned char *)in + s, &cp);
				if (!tok_uni_is_whitespace(cp))
					break;
				s += l;
			}
			if (s > 0)
				*at_start = 0;
		}
		if (n->right) {
			while (e > s) {
				size_t b = e - 1;
				uint32_t cp;
				while (b > s && ((unsigned char)in[b] & 0xC0) == 0x80)
					b--;
				tok_utf8_decode((const unsigned char *)in + b, &cp);
				if (!tok_uni_is_whitespace(cp))
					break;
				e = b;
			}
		}
		sb_add(out, in + s, e - s);
		return 0;
	}
	case NORM_REPLACE:
		return replace(n, in, len, out, at_start, md);
	case NORM_BERT:
		return bert_norm(n, in, len, out);
	case NORM_PREPEND:
		if (len)
			sb_add(out, n->content, n->clen);
		sb_add(out, in, len);
		return 0;
	}
	return err_set(-EINVAL, "bad normalizer");
}

int tok_norm_apply(const struct norm *n, const char *in, size_t len,
	       struct strbuf *out, int *at_start, pcre2_match_data *md)
{
	sb_reset(out);
	if (!n) {
		sb_add(out, in, len);
		return 0;
	}
	return apply_one(n, in, len, out, at_start, md);
}
