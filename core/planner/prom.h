/*
 * prom.h - read the samples the live planner needs out of a Prometheus
 * text exposition (format 0.0.4, as every dyn /metrics serves it).
 *
 * prom_sum adds up every sample of the metric named exactly name (so
 * "x_sum" is not matched by "x") whose labels include label="value" when
 * label is given (any labels otherwise).  Comment lines (# HELP, # TYPE)
 * are skipped; a sample whose value does not parse counts as absent.
 * Pure string work: no allocation, any thread.
 */
#ifndef DYN_PLANNER_PROM_H
#define DYN_PLANNER_PROM_H

/* The sum, and in *found (may be NULL) how many samples matched. */
double prom_sum(const char *text, const char *name, const char *label, const char *value,
		int *found);

#endif
