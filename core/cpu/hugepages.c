/*
 * hugepages.c - huge pages under the weight matrices (see hugepages.h).
 */
#include "core/cpu/hugepages.h"
#include "core/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __linux__
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#endif

#define HUGE_SIZE ((uintptr_t)2 << 20)
/* Tensors closer than this are one range (the loaders pack them, with
 * small norms and biases between the matrices). */
#define MERGE_GAP ((uintptr_t)64 << 10)

struct range {
	uintptr_t a, b;
};

static int by_start(const void *x, const void *y)
{
	const struct range *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

static void add(struct range *r, int *n, const struct model_tensor *t)
{
	if (!model_tensor_present(t) || !t->data || !t->nbytes)
		return;
	r[*n].a = (uintptr_t)t->data;
	r[*n].b = (uintptr_t)t->data + (uintptr_t)t->nbytes;
	(*n)++;
}

size_t hugepages_weights(const struct model *m)
{
	size_t done = 0;
#ifdef __linux__
	const struct model_weights *w = &m->w;
	struct range *r = xcalloc((size_t)w->n_layers * 7 + 2, sizeof(*r));
	int n = 0, k = 0;

	add(r, &n, &w->embed);
	if (w->lm_head.data != w->embed.data)
		add(r, &n, &w->lm_head);
	for (int l = 0; l < w->n_layers; l++) {
		const struct model_layer *L = &w->layers[l];
		add(r, &n, &L->wq);
		add(r, &n, &L->wk);
		add(r, &n, &L->wv);
		add(r, &n, &L->wo);
		add(r, &n, &L->w_gate);
		add(r, &n, &L->w_up);
		add(r, &n, &L->w_down);
	}
	qsort(r, (size_t)n, sizeof(*r), by_start);
	for (int i = 0; i < n; i++) {	/* merge neighbours */
		if (k && r[i].a <= r[k - 1].b + MERGE_GAP) {
			if (r[i].b > r[k - 1].b)
				r[k - 1].b = r[i].b;
		} else {
			r[k++] = r[i];
		}
	}
	for (int i = 0; i < k; i++) {
		uintptr_t a = (r[i].a + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1), b = r[i].b & ~(HUGE_SIZE - 1);
		/* per 2 MB, so a page the kernel cannot move loses only that
		 * one; EINVAL before any success: not supported here */
		for (; a < b; a += HUGE_SIZE) {
			if (madvise((void *)a, HUGE_SIZE, MADV_COLLAPSE) == 0)
				done += HUGE_SIZE;
			else if (errno == EINVAL && !done)
				goto out;
		}
	}
out:
	free(r);
#else
	(void)m;
#endif
	return done;
}
