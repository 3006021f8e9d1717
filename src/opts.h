/* opts.h - the options every front end shares (parsed in main.c). */
#ifndef CKPT_OPTS_H
#define CKPT_OPTS_H

#include <stdint.h>

#include "dtype.h"

#define CKPT_DEFAULT_MAX_SHARD (5000ull * 1000 * 1000)  /* 5 GB, as transformers */

struct ckpt_opts {
	int allow_holes;          /* zero-fill uncovered regions instead of failing */
	uint64_t max_hole_bytes;  /* allow_holes: most bytes zero-filled; 0: the data files' size */
	int keep_all;             /* show every tensor under its raw DCP name */
	uint64_t max_shard_size;  /* bytes of tensor data per output file */
	const char *assets;       /* directory whose non-weight files are shown too */
	int assets_found;         /* assets found next to the weights, not given: only known
	                             HuggingFace file names, no symlinks */
	uint64_t cache_bytes;     /* budget for decompressed / strided items in memory */
	const char *mapping;      /* "auto" (NULL), "none", or a rule file */
	int mapping_lax;          /* mapping_strict=0: unmatched sources are left out */
	enum ckpt_dtype dtype;    /* served floating dtype, CKPT_DT_INVALID = as stored */
	int dtype_auto;           /* dtype=auto: from the assets' config.json */
	int view_ema;             /* view=ema: EMA copies instead of trained weights */
	const char *ema_key;      /* which EMA copy (ema_params.<key>), NULL: the only one */
};

#endif
