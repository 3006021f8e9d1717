/* view.c - see view.h. */
#include "config.h"
#include "view.h"

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

/* Why a DCP entry is not a model weight, or NULL if it is one. */
static const char *non_model_reason(const char *fqn)
{
	static const char *const roots[] = {
		"optimizer", "optim", "lr_scheduler", "dataloader", "train_state",
	};
	size_t l = strlen(fqn);
	const char *dot = strchr(fqn, '.');
	size_t rl = dot ? (size_t)(dot - fqn) : l;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (strlen(roots[i]) == rl && strncmp(fqn, roots[i], rl) == 0)
			return "training state, not a model weight";
	if (strstr(fqn, "_extra_state"))
		return "TransformerEngine _extra_state, not a weight";
	if (l >= 11 && strcmp(fqn + l - 11, "_flat_param") == 0)
		return "FSDP1 flat parameter (LOCAL_STATE_DICT): per-parameter shapes are not stored";
	return NULL;
}

static int add_skip(struct ckpt_view *v, const char *name, const char *why)
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

static int cmp_vt(const void *a, const void *b)
{
	return ckpt_natcmp(((const struct ckpt_vtensor *)a)->name,
			   ((const struct ckpt_vtensor *)b)->name);
}

int ckpt_view_build(struct ckpt_view *v, struct ckpt_catalog *c, const struct ckpt_opts *o,
		    struct ckpt_err *e)
{
	size_t plen = 0;
	int rc = 0;

	memset(v, 0, sizeof(*v));
	if (!(v->t = calloc(c->ntensors ? c->ntensors : 1, sizeof(*v->t))))
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->nbytes && !rc; i++)
		rc = add_skip(v, c->bytes[i], "non-tensor (bytes) entry");
	for (size_t i = 0; i < c->nskipped && !rc; i++)
		rc = add_skip(v, c->skipped[i], "skipped");
	for (size_t i = 0; i < c->ntensors && !rc; i++) {
		struct ckpt_tensor *t = &c->tensors[i];
		const char *why = o->keep_all ? NULL : non_model_reason(t->name);
		if (!why && !ckpt_dtype_st_code(t->dtype))
			why = "dtype has no safetensors code";
		if (why) {
			rc = add_skip(v, t->name, why);
			continue;
		}
		v->t[v->n++] = (struct ckpt_vtensor){ .src = t, .dtype = t->dtype, .nbytes = t->nbytes };
	}
	if (rc)
		goto fail;
	/* one shared top-level wrapper, e.g. "model." */
	if (!o->keep_all && v->n > 0) {
		const char *first = v->t[0].src->name, *dot = strchr(first, '.');
		plen = dot ? (size_t)(dot - first) + 1 : 0;
		for (size_t i = 1; i < v->n && plen; i++)
			if (strncmp(v->t[i].src->name, first, plen) != 0)
				plen = 0;
		if (plen && !(v->stripped = strndup(first, plen - 1)))
			goto oom;
	}
	for (size_t i = 0; i < v->n; i++)
		if (!(v->t[i].name = strdup(v->t[i].src->name + plen)))
			goto oom;
	qsort(v->t, v->n, sizeof(*v->t), cmp_vt);
	return 0;
oom:
	rc = -ENOMEM;
fail:
	ckpt_view_free(v);
	return ckpt_err_set(e, rc, "out of memory");
}

void ckpt_view_free(struct ckpt_view *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->t[i].name);
	for (size_t i = 0; i < v->nskipped; i++)
		free(v->skipped[i]);
	free(v->t);
	free(v->skipped);
	free(v->stripped);
	memset(v, 0, sizeof(*v));
}
