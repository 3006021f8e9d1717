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

/* Copies bytes [off, off+len) of tensor t in C order into dst.  off and len
 * need not be element-aligned.  Thread-safe. */
int ckpt_gather(struct ckpt_chunkio *io, const struct ckpt_tensor *t, uint64_t off,
		uint64_t len, uint8_t *dst, struct ckpt_err *e);

#endif
