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
	uint64_t reads, bytes_served, read_errors;  /* atomic counters */
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
 * only at end of file).  Thread-safe. */
int ckpt_engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		     uint8_t *dst, size_t *got, struct ckpt_err *e);

#endif
