/*
 * wordwrap.c - jinja2's |wordwrap: every line of the text is wrapped the
 * way Python's textwrap.wrap() wraps it with the settings jinja2 passes
 * (tabs and other whitespace kept as they are, whitespace dropped where a
 * line is broken), and all the lines are joined with the wrap string.
 * Widths count code points.  Runs inside a render (allocates from its
 * arena, fails through rt_fail), so it is no more thread-bound than that.
 *
 * textwrap first cuts a line into chunks: runs of whitespace and words.
 * With break_on_hyphens a word is cut further after a hyphen that sits
 * between letters ("long-term" -> "long-", "term") and around em-dashes
 * ("well--known" -> "well", "--", "known").  Then it fills each line
 * greedily with whole chunks and splits a chunk only when it is longer
 * than the whole width.
 */
#include "core/tmpl/internal.h"

#include <inttypes.h>
#include <string.h>
#include <utf8proc.h>

struct line {
	const uint32_t *c;	/* code points */
	const size_t *off;	/* byte offset of each, and of the end */
	size_t n;
	const char *text;
};

struct chunk { size_t s, e; };	/* code points [s, e) */

static uint32_t at(const struct line *l, size_t i, long d)
{
	long j = (long)i + d;
	return j < 0 || (size_t)j >= l->n ? 0 : l->c[j];
}

/* the whitespace textwrap splits on (ASCII only) */
static bool ww_space(uint32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
/* regular expressions' \w, a letter ([^\d\W]) and textwrap's "word punctuation" */
static bool ww_word(uint32_t c) { return c && (c == '_' || cp_isalnum(c)); }
static bool ww_letter(uint32_t c)
{
	return ww_word(c) && utf8proc_category((utf8proc_int32_t)c) != UTF8PROC_CATEGORY_ND;
}
static bool ww_punct(uint32_t c) { return ww_word(c) || (c && c < 0x80 && strchr("!\"'&.,?", (int)c)); }

/* Two or more hyphens at i followed by a word character: an em-dash. */
static bool emdash_at(const struct line *l, size_t i)
{
	if (at(l, i, 0) != '-' || at(l, i, 1) != '-')
		return false;
	while (at(l, i, 0) == '-')
		i++;
	return ww_word(at(l, i, 0));
}

/* A word may end at e after a hyphen: two letters (or letter, hyphen,
 * letter) before the hyphen, and letter, optional hyphen, letter after. */
static bool hyphen_break(const struct line *l, size_t e)
{
	if (at(l, e, -1) != '-')
		return false;
	bool before = (ww_letter(at(l, e, -3)) && ww_letter(at(l, e, -2))) ||
		      (ww_letter(at(l, e, -4)) && at(l, e, -3) == '-' && ww_letter(at(l, e, -2)));
	bool after = ww_letter(at(l, e, 0)) &&
		     (ww_letter(at(l, e, 1)) || (at(l, e, 1) == '-' && ww_letter(at(l, e, 2))));
	return before && after;
}

/* Where the chunk that starts at i ends. */
static size_t chunk_end(const struct line *l, size_t i, bool hyphens)
{
	if (ww_space(l->c[i])) {
		while (i < l->n && ww_space(l->c[i]))
			i++;
		return i;
	}
	if (hyphens && i > 0 && ww_punct(l->c[i - 1]) && emdash_at(l, i)) {
		while (l->c[i] == '-')
			i++;
		return i;
	}
	size_t e = i + 1;
	for (; e < l->n && !ww_space(l->c[e]); e++) {
		if (!hyphens)
			continue;
		if (e - i >= 2 && hyphen_break(l, e))
			break;
		if (ww_punct(l->c[e - 1]) && emdash_at(l, e))
			break;
	}
	return e;
}

static bool blank(const struct line *l, struct chunk k)
{
	for (size_t i = k.s; i < k.e; i++)
		if (!py_isspace(l->c[i]))
			return false;
	return true;
}

/* One paragraph: the wrapped lines, each after the wrap string but the first. */
static void wrap_line(struct rt *rt, struct abuf *out, struct tv text, int64_t width, bool break_long,
		      struct tv wrap, bool hyphens)
{
	size_t cap = text.s.n;
	uint32_t *cps = ar_alloc_raw(&rt->ar, (cap + 1) * sizeof(*cps));
	size_t *off = ar_alloc_raw(&rt->ar, (cap + 1) * sizeof(*off));
	struct line l = { cps, off, 0, text.s.p };
	const char *p = text.s.p, *end = p + text.s.n;
	while (p < end) {
		off[l.n] = (size_t)(p - text.s.p);
		cps[l.n++] = utf8_next(&p, end);
	}
	off[l.n] = text.s.n;

	struct chunk *ch = ar_alloc_raw(&rt->ar, (l.n + 1) * sizeof(*ch));
	struct chunk *cur = ar_alloc_raw(&rt->ar, (l.n + 2) * sizeof(*cur));
	size_t nch = 0;
	for (size_t i = 0; i < l.n;) {
		size_t e = chunk_end(&l, i, hyphens);
		ch[nch++] = (struct chunk){ i, e };
		i = e;
	}

	size_t k = 0, lines = 0;
	while (k < nch) {
		rt_step(rt);
		if (lines && blank(&l, ch[k]))
			k++;	/* whitespace at the start of a continuation line */
		size_t ncur = 0;
		int64_t len = 0;
		while (k < nch && len + (int64_t)(ch[k].e - ch[k].s) <= width) {
			len += (int64_t)(ch[k].e - ch[k].s);
			cur[ncur++] = ch[k++];
		}
		if (k < nch && (int64_t)(ch[k].e - ch[k].s) > width) {
			/* a chunk longer than a line */
			int64_t room = width - len;
			if (break_long) {
				struct chunk c = ch[k];
				size_t cut = (size_t)room;
				if (hyphens && c.e - c.s > cut) {
					/* rather after the last hyphen that fits, if
					 * something other than hyphens precedes it */
					size_t h = 0;
					bool found = false;
					for (size_t i = c.s; i < c.s + cut; i++)
						if (l.c[i] == '-') {
							h = i - c.s;
							found = true;
						}
					bool other = false;
					for (size_t i = c.s; found && i < c.s + h; i++)
						if (l.c[i] != '-')
							other = true;
					if (found && h > 0 && other)
						cut = h + 1;
				}
				cur[ncur++] = (struct chunk){ c.s, c.s + cut };
				ch[k].s = c.s + cut;
			} else if (!ncur) {
				cur[ncur++] = ch[k++];
			}
		}
		if (ncur && blank(&l, cur[ncur - 1]))
			ncur--;	/* whitespace where the line breaks */
		if (!ncur)
			continue;
		if (lines++)
			ab_add(out, wrap.s.p, wrap.s.n);
		for (size_t i = 0; i < ncur; i++)
			ab_add(out, text.s.p + off[cur[i].s], off[cur[i].e] - off[cur[i].s]);
	}
}

struct tv str_wordwrap(struct rt *rt, struct tv s, int64_t width, bool break_long, struct tv wrap,
		       bool hyphens)
{
	if (width <= 0)
		rt_fail(rt, "invalid width %" PRId64 " (must be > 0)", width);
	struct tv lines = str_splitlines(rt, s, false);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	for (size_t i = 0; i < lines.l->n; i++) {
		if (i)
			ab_add(&b, wrap.s.p, wrap.s.n);
		wrap_line(rt, &b, lines.l->v[i], width, break_long, wrap, hyphens);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}
