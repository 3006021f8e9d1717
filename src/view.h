/* view.h - the view: which catalogue tensors are shown, under which names.
 *
 * The naming stage is one function (ckpt_view_build) so per-architecture
 * mapping can replace it later.  The default keeps model tensors only, drops
 * optimizer / scheduler / dataloader / train-state entries, TransformerEngine
 * _extra_state and FSDP1 _flat_param, and strips one top-level wrapper
 * ("model.") when every kept tensor shares it.  -o keep_all shows everything
 * under its raw name. */
#ifndef CKPT_VIEW_H
#define CKPT_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "opts.h"

struct ckpt_vtensor {
	char *name;                 /* output (HF) name */
	struct ckpt_tensor *src;    /* whole source tensor, served as is */
	enum ckpt_dtype dtype;
	uint64_t nbytes;
};

struct ckpt_view {
	struct ckpt_vtensor *t;     /* sorted by name (natural order) */
	size_t n;
	char **skipped;             /* "name: reason" for every left-out entry */
	size_t nskipped;
	char *stripped;             /* the wrapper prefix removed, or NULL */
};

/* Builds the view of catalogue c.  c must outlive the view. */
int ckpt_view_build(struct ckpt_view *v, struct ckpt_catalog *c, const struct ckpt_opts *o,
		    struct ckpt_err *e);
void ckpt_view_free(struct ckpt_view *v);

/* Natural string order: digit runs compare as numbers ("layers.2" <
 * "layers.10").  Total and consistent with strcmp on ties. */
int ckpt_natcmp(const char *a, const char *b);

#endif
