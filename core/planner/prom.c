/*
 * prom.c - sum samples of a Prometheus text exposition (prom.h).
 */
#include "core/planner/prom.h"

#include <stdlib.h>
#include <string.h>

/* 1 if the label set {..} starting at p (after '{') has label="value". */
static int has_label(const char *p, const char *end, const char *label, const char *value)
{
	size_t ln = strlen(label), vn = strlen(value);
	while (p < end && *p != '}') {
		while (p < end && (*p == ',' || *p == ' '))
			p++;
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (!eq || eq + 1 >= end || eq[1] != '"')
			return 0;
		const char *v = eq + 2, *q = v;
		while (q < end && *q != '"')
			q += (*q == '\\' && q + 1 < end) ? 2 : 1;
		if ((size_t)(eq - p) == ln && !memcmp(p, label, ln) && (size_t)(q - v) == vn &&
		    !memcmp(v, value, vn))
			return 1;
		p = q + 1;
	}
	return 0;
}

double prom_sum(const char *text, const char *name, const char *label, const char *value,
		int *found)
{
	size_t nn = strlen(name);
	double sum = 0;
	int n = 0;
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		if (!end)
			end = line + strlen(line);
		if (*line != '#' && (size_t)(end - line) > nn && !memcmp(line, name, nn) &&
		    (line[nn] == ' ' || line[nn] == '{')) {
			const char *p = line + nn;
			int ok = 1;
			if (*p == '{') {
				const char *close = memchr(p, '}', (size_t)(end - p));
				ok = close && (!label || has_label(p + 1, close, label, value));
				p = close ? close + 1 : end;
			} else if (label) {
				ok = 0;
			}
			char *e;
			double v = ok ? strtod(p, &e) : 0;
			if (ok && e != p && (e == end || *e == ' ' || *e == '\n')) {
				sum += v;
				n++;
			}
		}
		line = *end ? end + 1 : end;
	}
	if (found)
		*found = n;
	return sum;
}
