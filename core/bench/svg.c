/*
 * svg.c - SVG elements (see svg.h).
 */
#include "core/bench/svg.h"
#include "core/strbuf.h"

#include <math.h>

static void esc(struct strbuf *o, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': sb_adds(o, "&lt;"); break;
		case '>': sb_adds(o, "&gt;"); break;
		case '&': sb_adds(o, "&amp;"); break;
		case '"': sb_adds(o, "&quot;"); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				sb_addch(o, *s);
		}
	}
}

void svg_begin(struct strbuf *o, int w, int h)
{
	sb_addf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
		w, h, w, h, w, h);
}

void svg_end(struct strbuf *o)
{
	sb_adds(o, "</svg>\n");
}

void svg_text(struct strbuf *o, double x, double y, int size, const char *anchor,
	      const char *text)
{
	sb_addf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"%s\">", x, y,
		size, anchor);
	esc(o, text);
	sb_adds(o, "</text>\n");
}

void svg_line(struct strbuf *o, double x1, double y1, double x2, double y2,
	      const char *color, double width)
{
	sb_addf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
		"stroke-width=\"%.2g\"/>\n", x1, y1, x2, y2, color, width);
}

void svg_rect(struct strbuf *o, double x, double y, double w, double h,
	      const char *fill, const char *stroke)
{
	sb_addf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
		"stroke=\"%s\"/>\n", x, y, w, h, fill, stroke);
}

void svg_polyline(struct strbuf *o, const double *x, const double *y, size_t n,
		  const char *color, double width)
{
	sb_adds(o, "<polyline fill=\"none\" points=\"");
	for (size_t i = 0; i < n; i++)
		sb_addf(o, "%s%.1f,%.1f", i ? " " : "", x[i], y[i]);
	sb_addf(o, "\" stroke=\"%s\" stroke-width=\"%.2g\"/>\n", color, width);
}

void svg_circle(struct strbuf *o, double x, double y, double r, const char *color)
{
	sb_addf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n", x, y, r, color);
}

void svg_ticks(double lo, double hi, double *t, int max, int *n)
{
	*n = 0;
	if (!(hi > lo)) {
		t[(*n)++] = lo;
		return;
	}
	double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw)));
	double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag
											   : 10 * mag;
	for (double v = ceil(lo / step) * step; v <= hi + step * 1e-9 && *n < max; v += step)
		t[(*n)++] = fabs(v) < step * 1e-9 ? 0 : v;
}
