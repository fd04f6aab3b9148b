/*
 * predict.h - load predictors of the planner: from the values observed at
 * the end of each adjustment interval (request rate, mean ISL, mean OSL:
 * one predictor per series), the value expected in the next interval.
 *
 *   constant        the last observation
 *   moving-average  the mean of the last `window` observations
 *   holt            Holt's linear (double exponential) smoothing:
 *                     level_t = a x_t + (1 - a)(level_{t-1} + trend_{t-1})
 *                     trend_t = b (level_t - level_{t-1}) + (1 - b) trend_{t-1}
 *                   started with level_1 = x_1, trend_1 = 0; the forecast
 *                   h intervals ahead is level + h x trend, never below 0
 *                   (a rate cannot be).
 *
 * Before the first observation every predictor says 0.  Pure data, no
 * allocation; not thread-safe (one owner).
 */
#ifndef DYN_PLANNER_PREDICT_H
#define DYN_PLANNER_PREDICT_H

enum predictor_kind { PRED_CONSTANT, PRED_MOVING_AVERAGE, PRED_HOLT };

#define PRED_WINDOW_MAX 64

struct predictor {
	enum predictor_kind kind;
	int window;			/* moving-average: 1..PRED_WINDOW_MAX */
	double alpha, beta;		/* holt: both in (0, 1] */
	double hist[PRED_WINDOW_MAX];	/* ring of the last observations */
	int n;				/* observations so far */
	double level, trend;
};

/* The kind named name ("constant", "moving-average", "holt"); -1 if none. */
int predictor_kind_parse(const char *name);
const char *predictor_kind_name(enum predictor_kind k);

/* Set up p; window (moving-average) and alpha/beta (holt) are checked:
 * 0 or -EINVAL with err_msg() saying which is out of range. */
int predictor_init(struct predictor *p, enum predictor_kind kind, int window,
		   double alpha, double beta);
/* Record the value of the interval that just ended (negative counts as 0). */
void predictor_observe(struct predictor *p, double x);
/* The value expected in the next interval. */
double predictor_next(const struct predictor *p);
/* The value expected h (> 0, fractional allowed) intervals ahead: holt
 * extrapolates its trend; the others have none and say predictor_next(). */
double predictor_ahead(const struct predictor *p, double h);
/* The highest value expected from `from` to `to` intervals ahead (a
 * linear forecast: the larger of its ends). */
double predictor_peak(const struct predictor *p, double from, double to);

#endif
