/* opts.h - the options every front end shares (parsed in main.c). */
#ifndef CKPT_OPTS_H
#define CKPT_OPTS_H

#include <stdint.h>

#include "dtype.h"

#define CKPT_DEFAULT_MAX_SHARD (5000ull * 1000 * 1000)  /* 5 GB, as transformers */
#define CKPT_DEFAULT_CACHE_SIZE (10ull << 30)            /* on-disk cache cap */
#define CKPT_DEFAULT_CACHE_MIN_FREE (1ull << 30)         /* ... and free-space floor */
#define CKPT_DEFAULT_PREFETCH (64ull << 20)              /* read-ahead memory (mount) */

struct ckpt_dcache;
struct ckpt_blocks;

struct ckpt_opts {
	int allow_holes;          /* zero-fill uncovered regions instead of failing */
	uint64_t max_hole_bytes;  /* allow_holes: most bytes zero-filled; 0: the data files' size */
	int keep_all;             /* show every tensor under its raw DCP name */
	uint64_t max_shard_size;  /* bytes of tensor data per output file */
	const char *assets;       /* directory whose non-weight files are shown too */
	int assets_found;         /* assets found next to the weights, not given: only known
	                             HuggingFace file names, no symlinks */
	uint64_t cache_bytes;     /* item_cache: budget for decompressed / strided items in memory */
	const char *mapping;      /* "auto" (NULL), "none", or a rule file */
	int mapping_lax;          /* mapping_strict=0: unmatched sources are left out */
	enum ckpt_dtype dtype;    /* served floating dtype, CKPT_DT_INVALID = as stored */
	int dtype_auto;           /* dtype=auto: from the assets' config.json */
	int view_ema;             /* view=ema: EMA copies instead of trained weights */
	int view_model;           /* view=model given explicitly (BAGEL's default is ema) */
	const char *ema_key;      /* which EMA copy (ema_params.<key>), NULL: the only one */
	int dtype_orig;           /* dtype=orig given: as stored, .hf_metadata dtypes ignored */
	int bagel_stage;          /* BAGEL key classes served: 0 all, 1 UND, 2 UND+GEN */
	const char *cache_dir;    /* on-disk block cache directory, NULL: none */
	uint64_t cache_size;      /* its size cap */
	uint64_t cache_min_free;  /* free space it leaves on its file system */
	uint64_t prefetch;        /* read-ahead memory budget of the mount, 0: none */
	int gpu;                  /* gpu=on: large conversions on the GPU (gpu.h) */
	/* Shared state the front end sets up from the options above (not options
	 * themselves): the open cache directory and the mount's block pool. */
	struct ckpt_dcache *dcache;
	struct ckpt_blocks *blocks;
	/* set by the engine, not by the command line */
	const char *source_file;  /* read only this *.safetensors file of the directory */
	int source_view;          /* the source is one half of a model/EMA pair: 1 trained
	                             weights, 2 EMA copy (no ema.state selection then) */
};

#endif
