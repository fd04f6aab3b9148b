/*
 * disagg.c - conditional disaggregation (disagg.h).
 */
#include "core/router/disagg.h"

#include "core/err.h"

#include <errno.h>
#include <string.h>

static const char *const names[DISAGG_NDECISIONS] = { "remote", "local_short", "local_queue",
						      "local_no_prefill" };

enum disagg_decision disagg_decide(const struct disagg_config *c, long uncached_tokens,
				   const int64_t *queued, size_t n_prefill)
{
	if (!n_prefill)
		return DISAGG_LOCAL_NO_PREFILL;
	if (uncached_tokens < c->max_local_prefill_length)
		return DISAGG_LOCAL_SHORT;
	for (size_t i = 0; i < n_prefill; i++)
		if (!queued || queued[i] <= c->max_prefill_queue)
			return DISAGG_REMOTE;
	return DISAGG_LOCAL_QUEUE;
}

const char *disagg_decision_name(enum disagg_decision d)
{
	return (unsigned)d < DISAGG_NDECISIONS ? names[d] : "?";
}

int disagg_decision_parse(const char *name, enum disagg_decision *out)
{
	for (int i = 0; i < DISAGG_NDECISIONS; i++)
		if (!strcmp(name, names[i])) {
			*out = (enum disagg_decision)i;
			return 0;
		}
	return err_set(-EINVAL, "unknown disaggregation decision '%s'", name);
}
