/*
 * profile.h - what one worker can do, as `dyn profile` measures it and the
 * planner reads it (format in dyn-profile(1)):
 *
 *   {"version": 1, "model": "...", "engine": "...",
 *    "prefill": [{"isl": 128, "ttft_ms": 18.4, "tokens_per_s": 6950}, ...],
 *    "decode":  [{"concurrency": 1, "itl_ms": 5.9, "tokens_per_s": 169}, ...]}
 *
 * prefill: one request alone on the worker, by input length (ascending);
 * decode: `concurrency` requests decoding together, by concurrency
 * (ascending), tokens_per_s counting every sequence's tokens.
 *
 * Lookups interpolate linearly between points; outside the measured range
 * they extend the end segment (a single point is a constant), and never
 * return less than a tiny positive value, since a time or a throughput is
 * never 0.  Not thread-safe to build; lookups are pure.
 */
#ifndef DYN_PLANNER_PROFILE_H
#define DYN_PLANNER_PROFILE_H

#include <stddef.h>

#define PROFILE_VERSION 1
#define PROFILE_MAX_POINTS 64

struct profile_point {
	double x;		/* isl (prefill) or concurrency (decode) */
	double ms;		/* ttft_ms (prefill) or itl_ms (decode) */
	double tps;		/* tokens_per_s */
};

struct profile {
	char model[256];
	char engine[64];
	struct profile_point prefill[PROFILE_MAX_POINTS];
	int n_prefill;
	struct profile_point decode[PROFILE_MAX_POINTS];
	int n_decode;
};

/* Parse JSON text; 0, or -EINVAL with err_msg() naming what is wrong (not
 * JSON, wrong version, a missing or non-positive field, points not
 * ascending, no points, too many). */
int profile_parse(const char *json, size_t len, struct profile *p);
/* Read and parse a file. */
int profile_load(const char *path, struct profile *p);
/* The JSON text of p (malloc'd). */
char *profile_to_json(const struct profile *p);

/* Lookups (profile.h's interpolation). */
double profile_ttft_ms(const struct profile *p, double isl);
double profile_prefill_tps(const struct profile *p, double isl);
double profile_itl_ms(const struct profile *p, double concurrency);
double profile_decode_tps(const struct profile *p, double concurrency);
/* The largest concurrency within the measured range whose ITL is at most
 * itl_ms (interpolated); 0 when even the first point's ITL exceeds it. */
double profile_max_concurrency(const struct profile *p, double itl_ms);

#endif
