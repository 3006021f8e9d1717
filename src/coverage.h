/* coverage.h - the chunks of one source tensor: appending them, and
 * checking that they tile it (bounds, duplicates, overlaps, holes).  Used by
 * both readers (catalog.c, stinput.c). */
#ifndef CKPT_COVERAGE_H
#define CKPT_COVERAGE_H

#include <stdint.h>

#include "err.h"
#include "tensors.h"

/* Appends a chunk to t (zero-size chunks are ignored); duplicates are
 * removed by the coverage check.  Returns 0, -EOVERFLOW when its element
 * count overflows, or -ENOMEM.  The caller fills the storage fields of the
 * new last chunk. */
int ckpt_tensor_add_chunk(struct ckpt_tensor *t, const int64_t *off, const int64_t *size);

/* Sorts t's chunks along their split dimension, drops identical duplicates,
 * and checks bounds and overlaps; uncovered elements are an error unless
 * allow_holes (then t->holes is set, and the caller warns).
 * where names the source in messages.  Thread-safe. */
int ckpt_tensor_check_coverage(const char *where, struct ckpt_tensor *t, int allow_holes,
			       struct ckpt_err *e);

#endif
