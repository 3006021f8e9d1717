/* recipe.c - see recipe.h. */
#include "config.h"
#include "recipe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ckpt_natcmp(const char *a, const char *b)
{
	const char *a0 = a, *b0 = b;
	while (*a && *b) {
		if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
			const char *as = a, *bs = b;
			while (*as == '0') as++;
			while (*bs == '0') bs++;
			const char *ae = as, *be = bs;
			while (*ae >= '0' && *ae <= '9') ae++;
			while (*be >= '0' && *be <= '9') be++;
			if (ae - as != be - bs)
				return ae - as < be - bs ? -1 : 1;
			int c = strncmp(as, bs, (size_t)(ae - as));
			if (c)
				return c;
			a = ae;
			b = be;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++;
		b++;
	}
	if (*a || *b)
		return *a ? 1 : -1;
	return strcmp(a0, b0);
}

struct ckpt_vtensor *ckpt_view_add(struct ckpt_view *v, const char *name, enum ckpt_dtype dtype,
				   int ndim, const int64_t *shape)
{
	struct ckpt_vtensor *nt = realloc(v->t, (v->n + 1) * sizeof(*nt));
	if (!nt)
		return NULL;
	v->t = nt;
	struct ckpt_vtensor *t = &nt[v->n];
	memset(t, 0, sizeof(*t));
	if (!(t->name = strdup(name)))
		return NULL;
	v->n++;
	t->dtype = dtype;
	t->ndim = ndim;
	t->numel = 1;
	for (int d = 0; d < ndim; d++) {
		t->shape[d] = shape[d];
		t->numel *= (uint64_t)shape[d];
	}
	t->nbytes = t->numel * ckpt_dtype_size(dtype);
	return t;
}

int ckpt_vtensor_add_box(struct ckpt_vtensor *t, struct ckpt_tensor *src, const int64_t *lo,
			 const int64_t *hi)
{
	struct ckpt_segment *ns = realloc(t->seg, (t->nseg + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	t->seg = ns;
	struct ckpt_segment *sg = &ns[t->nseg];
	memset(sg, 0, sizeof(*sg));
	sg->src = src;
	sg->numel = 1;
	for (int d = 0; d < src->ndim; d++) {
		sg->lo[d] = lo ? lo[d] : 0;
		sg->hi[d] = hi ? hi[d] : src->shape[d];
		if (sg->lo[d] < 0 || sg->lo[d] > sg->hi[d] || sg->hi[d] > src->shape[d])
			return -EINVAL;
		sg->numel *= (uint64_t)(sg->hi[d] - sg->lo[d]);
	}
	t->nseg++;
	return 0;
}

void ckpt_view_free(struct ckpt_view *v)
{
	for (size_t i = 0; i < v->n; i++) {
		free(v->t[i].name);
		free(v->t[i].seg);
	}
	for (size_t i = 0; i < v->nskipped; i++)
		free(v->skipped[i]);
	free(v->t);
	free(v->skipped);
	free(v->stripped);
	free(v->mapping);
	free(v->note);
	memset(v, 0, sizeof(*v));
}

int ckpt_view_add_skip(struct ckpt_view *v, const char *name, const char *why)
{
	size_t n = strlen(name) + strlen(why) + 3;
	char **ns = realloc(v->skipped, (v->nskipped + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	v->skipped = ns;
	if (!(ns[v->nskipped] = malloc(n)))
		return -ENOMEM;
	snprintf(ns[v->nskipped++], n, "%s: %s", name, why);
	return 0;
}
