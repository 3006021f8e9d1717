/* inspect.c - prints what the mount would show. */
#include "config.h"
#include "frontends.h"

#include <inttypes.h>

static const char *shape_str(const struct ckpt_vtensor *t, char *buf, size_t n)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int d = 0; d < t->ndim && k < n; d++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

void ckpt_inspect(const struct ckpt_engine *g, FILE *fp, int list_tensors)
{
	const struct ckpt_catalog *c = &g->cat;
	const struct ckpt_layout *l = &g->layout;
	size_t nchunks = 0;

	for (size_t i = 0; i < c->ntensors; i++)
		nchunks += c->tensors[i].nchunks;
	ckpt_print_line(fp, "source: %s", c->dir);
	ckpt_print_line(fp, "metadata: %s", c->md_desc);
	fprintf(fp, "catalogue: %zu tensors (%zu chunks) and %zu non-tensor entries in %zu data files\n",
		c->ntensors, nchunks, c->nbytes, c->nfiles);
	ckpt_print_line(fp, "shown: %zu tensors, %" PRIu64 " bytes%s%s%s", g->view.n, l->tensor_bytes,
			g->view.stripped ? " (wrapper '" : "", g->view.stripped ? g->view.stripped : "",
			g->view.stripped ? ".' stripped from every name)" : "");
	fprintf(fp, "files:\n");
	for (size_t i = 0; i < l->n; i++) {
		const struct ckpt_vfile *f = &l->f[i];
		char what[64] = "";
		if (f->kind == CKPT_VF_WEIGHTS)
			snprintf(what, sizeof(what), "  %zu tensors", f->next);
		else if (f->kind == CKPT_VF_ASSET)
			snprintf(what, sizeof(what), "  (asset)");
		ckpt_print_line(fp, "  %-40s %14" PRIu64 " bytes%s", f->name, f->size, what);
	}
	if (list_tensors) {
		fprintf(fp, "tensors:\n");
		for (size_t i = 0; i < l->nweights; i++)
			for (size_t k = 0; k < l->f[i].next; k++) {
				const struct ckpt_vtensor *t = l->f[i].ext[k].t;
				char shape[512];
				const struct ckpt_tensor *src = t->seg[0].src;
				ckpt_print_line(fp, "  %s  %s %s  %s  <- %s%s (%zu chunk%s)%s", t->name,
						ckpt_dtype_st_code(t->dtype), shape_str(t, shape, sizeof(shape)),
						l->f[i].name, src->name,
						t->nseg > 1 ? " and more" : "", src->nchunks,
						src->nchunks == 1 ? "" : "s",
						src->holes ? "  (holes read as zeros)" : "");
			}
	}
	if (g->view.nskipped) {
		fprintf(fp, "skipped: %zu entries\n", g->view.nskipped);
		for (size_t i = 0; i < g->view.nskipped; i++)
			ckpt_print_line(fp, "  %s", g->view.skipped[i]);
	}
	fprintf(fp, "warnings: %u\n", ckpt_warn_count());
}
