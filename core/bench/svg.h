/*
 * svg.h - a very small SVG writer: enough for line charts (axes, ticks,
 * labels, polylines, markers, legends).  Text is XML-escaped.
 * Appends to a caller-owned strbuf; no state; thread-safe.
 */
#ifndef DYN_BENCH_SVG_H
#define DYN_BENCH_SVG_H

#include <stddef.h>

struct strbuf;

void svg_begin(struct strbuf *o, int width, int height);
void svg_end(struct strbuf *o);
/* anchor: "start", "middle" or "end". */
void svg_text(struct strbuf *o, double x, double y, int size, const char *anchor,
	      const char *text);
void svg_line(struct strbuf *o, double x1, double y1, double x2, double y2,
	      const char *color, double width);
void svg_rect(struct strbuf *o, double x, double y, double w, double h,
	      const char *fill, const char *stroke);
void svg_polyline(struct strbuf *o, const double *x, const double *y, size_t n,
		  const char *color, double width);
void svg_circle(struct strbuf *o, double x, double y, double r, const char *color);

/* "Nice" axis ticks for [lo, hi]: fills t[0..*n) (at most max). */
void svg_ticks(double lo, double hi, double *t, int max, int *n);

#endif
