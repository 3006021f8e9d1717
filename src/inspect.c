/* inspect.c - prints what the mount would show. */
#include "config.h"
#include "frontends.h"

#include <inttypes.h>
#include <string.h>

static const char *shape_str(const struct ckpt_vtensor *t, char *buf, size_t n)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int d = 0; d < t->ndim && k < n; d++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

/* One line per segment run: consecutive segments of the same source that
 * differ only in the first partial dimension are folded into one line. */
static void explain(FILE *fp, const struct ckpt_vtensor *t)
{
	for (size_t i = 0; i < t->nseg;) {
		const struct ckpt_segment *s = &t->seg[i];
		size_t j = i + 1;
		while (j < t->nseg && t->seg[j].src == s->src)
			j++;
		char box[1024];
		size_t k = 0;
		for (int d = 0; d < s->src->ndim && k < sizeof(box); d++)
			k += (size_t)snprintf(box + k, sizeof(box) - k, "%s%lld:%lld", d ? ", " : "",
					      (long long)s->lo[d], (long long)s->hi[d]);
		if (j - i == 1)
			ckpt_print_line(fp, "      %s[%s]%s", s->src->name, box,
					s->transpose ? " transposed" : "");
		else
			ckpt_print_line(fp, "      %s[%s] and %zu more boxes of it (%s)", s->src->name, box,
					j - i - 1, "row groups or a row permutation");
		i = j;
	}
}

void ckpt_inspect(const struct ckpt_engine *g, FILE *fp, int detail, const char *only)
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
	if (g->opts.assets)
		ckpt_print_line(fp, "assets: %s (%s)", g->opts.assets,
				g->assets_origin ? g->assets_origin : "found");
	else
		fprintf(fp, "assets: none (weights only; -o assets=DIR adds config and tokenizer)\n");
	if (g->view.mapping)
		ckpt_print_line(fp, "mapping: %s", g->view.mapping);
	if (g->view.note)
		ckpt_print_line(fp, "layout: %s", g->view.note);
	if (g->views == (CKPT_VIEW_MODEL | CKPT_VIEW_EMA))
		ckpt_print_line(fp, "view: %s (this checkpoint also holds its %s: -o view=%s)",
				g->served_view == CKPT_VIEW_EMA ? "ema" : "model",
				g->served_view == CKPT_VIEW_EMA ? "trained weights" : "EMA copy",
				g->served_view == CKPT_VIEW_EMA ? "model" : "ema");
	if (g->source)
		ckpt_print_line(fp, "reading: %s", g->source);
	if (g->view.dtype_mapped)
		ckpt_print_line(fp, "dtypes: %zu tensors in their original HuggingFace dtype "
				"(.hf_metadata/fqn_to_dtype_mapping.json)", g->view.dtype_mapped);
	fprintf(fp, "files:\n");
	for (size_t i = 0; i < l->n; i++) {
		const struct ckpt_vfile *f = &l->f[i];
		char what[64] = "";
		if (f->kind == CKPT_VF_WEIGHTS)
			snprintf(what, sizeof(what), "  %zu tensors", f->next);
		else if (f->kind == CKPT_VF_ASSET)
			snprintf(what, sizeof(what), "  (asset%s)", f->head ? ", dtype patched" : "");
		ckpt_print_line(fp, "  %-40s %14" PRIu64 " bytes%s", f->name, f->size, what);
	}
	if (detail) {
		fprintf(fp, "tensors:\n");
		for (size_t i = 0; i < l->nweights; i++)
			for (size_t k = 0; k < l->f[i].next; k++) {
				const struct ckpt_vtensor *t = l->f[i].ext[k].t;
				if (only && strcmp(only, t->name) != 0)
					continue;
				char shape[512];
				const struct ckpt_tensor *src = t->seg[0].src;
				ckpt_print_line(fp, "  %s  %s %s  %s  <- %s%s (%zu chunk%s)%s", t->name,
						ckpt_dtype_st_code(t->dtype), shape_str(t, shape, sizeof(shape)),
						l->f[i].name, src->name,
						t->nseg > 1 ? " and more" : "", src->nchunks,
						src->nchunks == 1 ? "" : "s",
						src->holes ? "  (holes read as zeros)" : "");
				if (detail > 1)
					explain(fp, t);
			}
	}
	if (g->view.nskipped) {
		fprintf(fp, "skipped: %zu entries\n", g->view.nskipped);
		for (size_t i = 0; i < g->view.nskipped; i++)
			ckpt_print_line(fp, "  %s", g->view.skipped[i]);
	}
	fprintf(fp, "warnings: %u\n", ckpt_warn_count());
}
