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

struct ckpt_engine {
	struct ckpt_opts opts;
	char *assets_found;        /* assets directory discovered next to the weights */
	struct ckpt_catalog cat;
	struct ckpt_view view;
	struct ckpt_layout layout;
	struct ckpt_chunkio *io;
	uint64_t reads, bytes_served, read_errors;  /* atomic counters */
};

/* Renders the counters as "name value" lines (the .ckptfs-stats file) into
 * buf; returns the length.  Thread-safe. */
size_t ckpt_engine_stats(struct ckpt_engine *g, char *buf, size_t n);

/* Opens src with options o (copied).  On failure nothing is left to free. */
int ckpt_engine_open(struct ckpt_engine *g, const char *src, const struct ckpt_opts *o,
		     struct ckpt_err *e);
void ckpt_engine_close(struct ckpt_engine *g);

/* Reads up to len bytes of file idx at off into dst; *got is the count (short
 * only at end of file).  Thread-safe. */
int ckpt_engine_read(struct ckpt_engine *g, size_t idx, uint64_t off, size_t len,
		     uint8_t *dst, size_t *got, struct ckpt_err *e);

#endif
