/* serve.h - the bytes of one output tensor: a byte range of a view tensor
 * is mapped to its recipe's segments, gathered from the chunks of each
 * source tensor, and converted to the served dtype. */
#ifndef CKPT_SERVE_H
#define CKPT_SERVE_H

#include <stdint.h>

#include "chunkio.h"
#include "view.h"

/* Copies bytes [off, off+len) of t (C order, served dtype) into dst.  off
 * and len need not be element-aligned.  Thread-safe. */
int ckpt_serve(struct ckpt_chunkio *io, const struct ckpt_vtensor *t, uint64_t off, uint64_t len,
	       uint8_t *dst, struct ckpt_err *e);

#endif
