/* chunkio.h - reading the stored elements of one chunk.
 *
 * Plain C-contiguous items are read with pread() straight into the caller's
 * buffer.  Compressed (zstd) items and items with non-contiguous strides are
 * loaded whole into memory once and kept in a small LRU cache with a byte
 * budget; big-endian items are byte-swapped after the copy. */
#ifndef CKPT_CHUNKIO_H
#define CKPT_CHUNKIO_H

#include <stdint.h>

#include "catalog.h"

struct ckpt_chunkio;

/* Counters of the read path, updated atomically. */
struct ckpt_io_stats {
	uint64_t bytes_read;       /* pread from the source files */
	uint64_t bytes_converted;  /* output bytes of dtype conversions */
	uint64_t item_loads;       /* items loaded whole (zstd, strided): cache misses */
	uint64_t item_hits;        /* ... served from the item cache */
};

/* Creates the reader for catalogue c with a cache budget in bytes.  The
 * catalogue must outlive it. */
int ckpt_chunkio_new(struct ckpt_chunkio **out, struct ckpt_catalog *c, uint64_t budget);
void ckpt_chunkio_free(struct ckpt_chunkio *io);

/* The live counters of io (read them with __atomic_load_n). */
struct ckpt_io_stats *ckpt_chunkio_stats(struct ckpt_chunkio *io);

/* Copies n elements of chunk ch of tensor t, starting at linear index first
 * in the chunk's C order, to dst (n * element size bytes).  Thread-safe. */
int ckpt_chunkio_copy(struct ckpt_chunkio *io, const struct ckpt_tensor *t,
		      struct ckpt_chunk *ch, uint64_t first, uint64_t n, uint8_t *dst,
		      struct ckpt_err *e);

#endif
