/*
 * predict.c - load predictors (see predict.h).
 */
#include "core/planner/predict.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>

static const char *const names[] = {
	[PRED_CONSTANT] = "constant",
	[PRED_MOVING_AVERAGE] = "moving-average",
	[PRED_HOLT] = "holt",
};

int predictor_kind_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

const char *predictor_kind_name(enum predictor_kind k)
{
	return names[k];
}

int predictor_init(struct predictor *p, enum predictor_kind kind, int window,
		   double alpha, double beta)
{
	memset(p, 0, sizeof(*p));
	if (kind == PRED_MOVING_AVERAGE && (window < 1 || window > PRED_WINDOW_MAX))
		return err_set(-EINVAL, "moving-average window %d is not in 1..%d", window,
			       PRED_WINDOW_MAX);
	if (kind == PRED_HOLT && !(alpha > 0 && alpha <= 1 && beta > 0 && beta <= 1))
		return err_set(-EINVAL, "holt alpha %g and beta %g must both be in (0, 1]",
			       alpha, beta);
	p->kind = kind;
	p->window = window;
	p->alpha = alpha;
	p->beta = beta;
	return 0;
}

void predictor_observe(struct predictor *p, double x)
{
	if (!(x > 0))
		x = 0;
	p->hist[p->n % PRED_WINDOW_MAX] = x;
	if (p->kind == PRED_HOLT) {
		if (p->n == 0) {
			p->level = x;
			p->trend = 0;
		} else {
			double prev = p->level;
			p->level = p->alpha * x + (1 - p->alpha) * (p->level + p->trend);
			p->trend = p->beta * (p->level - prev) + (1 - p->beta) * p->trend;
		}
	}
	p->n++;
}

double predictor_next(const struct predictor *p)
{
	return predictor_ahead(p, 1);
}

double predictor_ahead(const struct predictor *p, double h)
{
	if (p->n == 0)
		return 0;
	switch (p->kind) {
	case PRED_MOVING_AVERAGE: {
		int k = p->n < p->window ? p->n : p->window;
		double s = 0;
		for (int i = 1; i <= k; i++)
			s += p->hist[(p->n - i) % PRED_WINDOW_MAX];
		return s / k;
	}
	case PRED_HOLT: {
		double f = p->level + h * p->trend;
		return f > 0 ? f : 0;
	}
	case PRED_CONSTANT:
	default:
		return p->hist[(p->n - 1) % PRED_WINDOW_MAX];
	}
}

double predictor_peak(const struct predictor *p, double from, double to)
{
	double a = predictor_ahead(p, from), b = predictor_ahead(p, to);
	return a > b ? a : b;
}
