/*
 * backend.c - the registry of compute backends (see backend.h): names to
 * backend types.
 *
 * The CUDA backend (gpu/backend_cuda.h) is always registered: its
 * available() says why it cannot run (no kernels built in, no driver, no
 * GPU).
 */
#include "core/engine/backend.h"
#include "core/err.h"
#include "gpu/backend_cuda.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *const backend_names[] = { "cpu", "cuda", NULL };

/* By name, in backend_names' order. */
static const struct backend_type *const types[] = {
	&backend_cpu,
	&backend_cuda,
};

#define N_REGISTRY (sizeof(types) / sizeof(types[0]))

const struct backend_type *backend_lookup(const char *name, int *rc)
{
	char names[128] = "";

	for (size_t i = 0; i < N_REGISTRY; i++)
		if (!strcmp(backend_names[i], name))
			return types[i];
	for (size_t i = 0; i < N_REGISTRY; i++)
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
			 i ? ", " : "", backend_names[i]);
	err_set(-ENOENT, "no backend named '%s' (known: %s)", name, names);
	if (rc)
		*rc = -ENOENT;
	return NULL;
}

int backend_create(const char *name, const struct backend_config *c, struct backend **out)
{
	int rc;
	const struct backend_type *t = backend_lookup(name, &rc);

	if (!t)
		return rc;
	if (t->available && (rc = t->available()) < 0)
		return rc;
	return t->create(c, out);
}
