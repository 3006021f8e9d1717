/* engine.h - the one data path every front end uses: source directory ->
 * catalogue -> view -> layout, and read(file, offset, length) over it.
 * What export writes is byte for byte what the mount serves. */
#ifndef CKPT_ENGINE_H
#define CKPT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "chunkio.h"
#include "layout.h"
#include "opts.h"
#include "view.h"

/* Served bytes are made in blocks of this size (aligned on file offsets)
 * where making them costs work; see ckpt_engine_read. */
#define CKPT_BLOCK (1u << 20)

/* Views of a checkpoint (bit mask): its trained weights, its EMA copy. */
#define CKPT_VIEW_MODEL 1
#define CKPT_VIEW_EMA 2

struct ckpt_engine {
	struct ckpt_opts opts;
	char *assets_found;        /* assets directory discovered (not given) */
	char *assets_origin;       /* where the assets directory came from, or NULL */
	char *source;              /* the directory read (a model/EMA pair's half), or NULL */
	int views;                 /* the views this checkpoint holds (CKPT_VIEW_* mask) */
	int served_view;           /* the one served */
	struct ckpt_catalog cat;
	struct ckpt_view view;
	struct ckpt_layout layout;
	struct ckpt_chunkio *io;
	uint8_t **costly;          /* per file: bitmap of the blocks that cost work (dtype
	                              conversion, transpose, compressed or strided items);
	                              NULL for a file with none */
	int dkey;                  /* key handle in opts.dcache, or -1 */
	char key[33];              /* the cache key (cachekey.h), "" without a cache */
	uint64_t reads, bytes_served, read_errors, blocks_made;  /* atomic counters */
};

/* Renders the counters as "name value" lines (the .ckptfs-stats file) into
 * buf; returns the length.  Thread-safe. */
size_t ckpt_engine_stats(struct ckpt_engine *g, char *buf, size_t n);

/* Whether dir holds a model/EMA pair: BAGEL's ema.safetensors (with or
 * without model.safetensors), or ema/ (and model/) subdirectories each
 * holding a checkpoint when dir itself holds none.  Returns the
 * CKPT_VIEW_* mask of the halves present, 0 when dir is no pair.  *files is
 * set when the halves are files. */
int ckpt_engine_pair(const char *dir, int *files);

/* Opens src with options o (copied).  A model/EMA pair serves -o view's half
 * (default: the EMA copy, which BAGEL loads).  On failure nothing is left to
 * free. */
int ckpt_engine_open(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o,
		     struct ckpt_err *e);
void ckpt_engine_close(struct ckpt_engine *g);

/* Reads up to len bytes of file idx at off into dst; *got is the count (short
 * only at end of file).  Data that costs work to make is made a whole
 * CKPT_BLOCK at a time: through opts.blocks when set (kept in memory, read
 * ahead), and from or into opts.dcache when set.  Thread-safe. */
int ckpt_engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		     uint8_t *dst, size_t *got, struct ckpt_err *e);

#endif
