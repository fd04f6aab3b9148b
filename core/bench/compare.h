/*
 * compare.h - "dyn bench report": load saved --json results, compare
 * them side by side (ratios to the first column) and plot them.
 *
 * Every run of every file is a column, named after the file (plus the
 * run's label when a file holds several runs, e.g. a sweep).  The plot
 * (SVG) has three panels: the CDF of TTFT and of ITL per column, and
 * output-token throughput against concurrency (or request rate, for open
 * loops) per file.  A figure a column lacks (null, or a statistic with
 * no samples, "n": 0) is shown as "-", with no ratio.
 *
 * Ownership: bench_cmp_load returns an object the caller frees with
 * bench_cmp_free.  Not thread-safe.
 */
#ifndef DYN_BENCH_COMPARE_H
#define DYN_BENCH_COMPARE_H

#include <stddef.h>

struct strbuf;
struct bench_cmp;

int bench_cmp_load(const char *const *paths, size_t n, struct bench_cmp **out);
void bench_cmp_table(const struct bench_cmp *c, struct strbuf *out);
void bench_cmp_svg(const struct bench_cmp *c, struct strbuf *out);
void bench_cmp_free(struct bench_cmp *c);

#endif
