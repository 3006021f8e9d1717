/* mapfile.h - a rule file of mapping/ loaded (see mapping.h for the
 * format and what applying one does): loading with "extends", its name and
 * priority, detection, and parameters from Megatron training args. */
#ifndef CKPT_MAPFILE_H
#define CKPT_MAPFILE_H

#include <stddef.h>

#include "err.h"
#include "tensors.h"

struct ckpt_mapping;

/* Loads the rule file at path.  config (may be NULL) is the parsed
 * config.json (a jansson json_t *, borrowed) that supplies parameters. */
int ckpt_mapping_load(struct ckpt_mapping **out, const char *path, void *config,
		      struct ckpt_err *e);
void ckpt_mapping_free(struct ckpt_mapping *m);
const char *ckpt_mapping_name(const struct ckpt_mapping *m);
/* The file's "priority" (default 0): the highest detected one wins. */
int ckpt_mapping_priority(const struct ckpt_mapping *m);

/* When m has no config.json, derives its parameters from args (a jansson
 * object of Megatron training args, borrowed; label names its file) through
 * m's "megatron_args" table; keys whose expression needs an arg that is not
 * an integer or boolean are left undefined.  A no-op for a file without the
 * table.  Returns 0 or -errno. */
int ckpt_mapping_use_args(struct ckpt_mapping *m, void *args, const char *label,
			  struct ckpt_err *e);
/* Whether m's parameters come from Megatron args. */
int ckpt_mapping_params_from_args(const struct ckpt_mapping *m);

/* Whether m's detect section fits these (stripped) tensor names, the
 * checkpoint directory and the config (a file whose parameters come from
 * Megatron args needs "args": true and skips the architecture check).
 * Returns 1 or 0. */
int ckpt_mapping_detect(const struct ckpt_mapping *m, struct ckpt_tensor *const *src,
			char *const *names, size_t n, const char *ckpt_dir);

#endif
