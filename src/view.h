/* view.h - the naming stage: which catalogue tensors are shown, under which
 * names and in which dtype (the data it builds is in recipe.h).
 *
 * The naming stage is one function (ckpt_view_build).  The default keeps
 * model tensors only, drops optimizer / scheduler / dataloader / train-state
 * entries, TransformerEngine _extra_state and FSDP1 _flat_param, and strips
 * one top-level wrapper ("model.") when every kept tensor shares it.
 * -o keep_all shows everything under its raw name. */
#ifndef CKPT_VIEW_H
#define CKPT_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "opts.h"
#include "recipe.h"

/* The directory of the shipped rule files: $CKPTFS_MAPPING_DIR, else the
 * installed one, else ../mapping next to the executable (source tree). */
const char *ckpt_mapping_dir(void);

/* Builds the view of catalogue c.  c must outlive the view. */
int ckpt_view_build(struct ckpt_view *v, struct ckpt_catalog *c, const struct ckpt_opts *o,
		    struct ckpt_err *e);

#endif
