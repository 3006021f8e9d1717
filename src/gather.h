/* gather.h - assembling a byte range of a global tensor from its chunks.
 *
 * The range is mapped to runs that are contiguous both in the global C order
 * and inside one chunk; each run is copied by chunkio (pread straight into the
 * destination for plain items).  Uncovered elements (allowed holes) read as
 * zeros.  Memory use is independent of the tensor size. */
#ifndef CKPT_GATHER_H
#define CKPT_GATHER_H

#include <stdint.h>

#include "catalog.h"
#include "chunkio.h"

#include "view.h"

/* Copies elements [first, first+n) of tensor t (its global C order) into
 * dst, in t's dtype.  Thread-safe. */
int ckpt_gather_elems(struct ckpt_chunkio *io, const struct ckpt_tensor *t, uint64_t first,
		      uint64_t n, uint8_t *dst, struct ckpt_err *e);

/* Copies elements [first, first+n) of segment sg (the C order of its box)
 * into dst, in the source tensor's dtype.  Thread-safe. */
int ckpt_gather_box(struct ckpt_chunkio *io, const struct ckpt_segment *sg, uint64_t first,
		    uint64_t n, uint8_t *dst, struct ckpt_err *e);

#endif
