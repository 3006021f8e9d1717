/* recipe.h - the view's data: every output tensor with its name, served
 * dtype, shape and recipe.  A recipe is a list of segments, each a box
 * (index ranges per dimension) of one catalogue tensor; the output's
 * elements are the segments' elements in C order, one after the other.
 * Renames, layer unstacking, splits, row permutations, trims and
 * concatenations are all recipes of this kind, so they are served as byte
 * ranges of the sources.  Built by the naming stage (view.c, mapping.c). */
#ifndef CKPT_RECIPE_H
#define CKPT_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "tensors.h"

struct ckpt_segment {
	struct ckpt_tensor *src;
	int64_t lo[CKPT_MAXDIM], hi[CKPT_MAXDIM];  /* the box, in source coordinates */
	uint64_t numel;
	int transpose;  /* serve the box's last two dims swapped (the others have extent 1) */
};

struct ckpt_vtensor {
	char *name;                 /* output (HF) name */
	enum ckpt_dtype dtype;      /* served dtype */
	int ndim;
	int64_t shape[CKPT_MAXDIM];
	uint64_t numel, nbytes;
	struct ckpt_segment *seg;   /* the recipe */
	size_t nseg;
};

struct ckpt_view {
	struct ckpt_vtensor *t;     /* sorted by name (natural order) */
	size_t n;
	char **skipped;             /* "name: reason" for every left-out entry */
	size_t nskipped;
	char *stripped;             /* the wrapper prefix removed, or NULL */
	char *mapping;              /* name of the mapping applied, or NULL */
	enum ckpt_dtype served;     /* dtype floating tensors are served in, or INVALID */
	const char *weights_file;   /* BAGEL: the one weights file ("ema.safetensors" or
	                               "model.safetensors"), else NULL */
	char *note;                 /* what the naming stage recognised (for inspect), or NULL */
	size_t dtype_mapped;        /* tensors served in their .hf_metadata dtype */
};

/* Adds an output tensor with no segments yet; NULL when out of memory.
 * The pointer stays valid until the next ckpt_view_add. */
struct ckpt_vtensor *ckpt_view_add(struct ckpt_view *v, const char *name, enum ckpt_dtype dtype,
				   int ndim, const int64_t *shape);

/* Appends the box [lo, hi) of src to t's recipe.  lo/hi NULL means the
 * whole tensor.  Returns 0, -EINVAL when the box leaves src, -ENOMEM. */
int ckpt_vtensor_add_box(struct ckpt_vtensor *t, struct ckpt_tensor *src, const int64_t *lo,
			 const int64_t *hi);

/* Records that source name is not shown, and why ("name: why" in
 * v->skipped, listed by inspect).  Returns 0 or -ENOMEM. */
int ckpt_view_add_skip(struct ckpt_view *v, const char *name, const char *why);

/* Frees everything the view holds. */
void ckpt_view_free(struct ckpt_view *v);

/* Natural string order: digit runs compare as numbers ("layers.2" <
 * "layers.10").  Total and consistent with strcmp on ties. */
int ckpt_natcmp(const char *a, const char *b);

#endif
