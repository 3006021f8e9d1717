/* inspect.c - prints what the mount would show. */
#include "config.h"
#include "frontends.h"

#include <inttypes.h>

static void print_shape(FILE *fp, const struct ckpt_tensor *t)
{
	fputc('[', fp);
	for (int d = 0; d < t->ndim; d++)
		fprintf(fp, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
	fputc(']', fp);
}

void ckpt_inspect(const struct ckpt_engine *g, FILE *fp, int list_tensors)
{
	const struct ckpt_catalog *c = &g->cat;
	const struct ckpt_layout *l = &g->layout;
	size_t nchunks = 0;

	for (size_t i = 0; i < c->ntensors; i++)
		nchunks += c->tensors[i].nchunks;
	fprintf(fp, "source: %s\n", c->dir);
	fprintf(fp, "metadata: %s\n", c->md_desc);
	fprintf(fp, "catalogue: %zu tensors (%zu chunks) and %zu non-tensor entries in %zu data files\n",
		c->ntensors, nchunks, c->nbytes, c->nfiles);
	fprintf(fp, "shown: %zu tensors, %" PRIu64 " bytes", g->view.n, l->tensor_bytes);
	if (g->view.stripped)
		fprintf(fp, " (wrapper '%s.' stripped from every name)", g->view.stripped);
	fputc('\n', fp);
	fprintf(fp, "files:\n");
	for (size_t i = 0; i < l->n; i++) {
		const struct ckpt_vfile *f = &l->f[i];
		fprintf(fp, "  %-40s %14" PRIu64 " bytes", f->name, f->size);
		if (f->kind == CKPT_VF_WEIGHTS)
			fprintf(fp, "  %zu tensors", f->next);
		else if (f->kind == CKPT_VF_ASSET)
			fprintf(fp, "  (asset)");
		fputc('\n', fp);
	}
	if (list_tensors) {
		fprintf(fp, "tensors:\n");
		for (size_t i = 0; i < l->nweights; i++)
			for (size_t k = 0; k < l->f[i].next; k++) {
				const struct ckpt_vtensor *t = l->f[i].ext[k].t;
				fprintf(fp, "  %s  %s ", t->name, ckpt_dtype_st_code(t->dtype));
				print_shape(fp, t->src);
				fprintf(fp, "  %zu chunk%s  %s  <- %s%s\n", t->src->nchunks,
					t->src->nchunks == 1 ? "" : "s", l->f[i].name, t->src->name,
					t->src->holes ? "  (holes read as zeros)" : "");
			}
	}
	if (g->view.nskipped) {
		fprintf(fp, "skipped: %zu entries\n", g->view.nskipped);
		for (size_t i = 0; i < g->view.nskipped; i++)
			fprintf(fp, "  %s\n", g->view.skipped[i]);
	}
	fprintf(fp, "warnings: %u\n", ckpt_warn_count());
}
