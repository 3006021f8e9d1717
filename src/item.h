/* item.h - decoding one DCP tensor item: a torch.save archive of one tensor.
 *
 * Finds data.pkl, interprets the rebuild call (_rebuild_tensor_v2/v3 and the
 * wrappers listed in dcp-format.md 4.3), and locates the storage record.  The
 * result says where the tensor's elements are and how they are laid out. */
#ifndef CKPT_ITEM_H
#define CKPT_ITEM_H

#include <stdint.h>

#include "blob.h"
#include "dtype.h"

#define CKPT_MAXDIM 16

struct ckpt_item {
	enum ckpt_dtype dtype;
	int ndim;
	int64_t size[CKPT_MAXDIM];
	int64_t stride[CKPT_MAXDIM];   /* in elements */
	int64_t storage_offset;        /* in elements */
	uint64_t storage_bytes;        /* length of the storage record */
	uint64_t data_off;             /* storage record start, relative to the blob */
	int big_endian;                /* byteorder record says "big" */
	int contiguous;                /* C-contiguous strides (size-1 dims ignored) */
};

struct tzip;
struct ckpt_pickle;

/* Opens the torch.save archive in b: checks the zip magic, reads the zip
 * directory into *z and parses its data.pkl (at most 16 MiB, read into
 * *pkl, which pk may point into) into *pk.  On success the caller frees
 * all three (ckpt_pickle_free, free, tzip_free); on failure nothing is left
 * to free.  Errors name b->label and the byte or record.  Thread-safe. */
int ckpt_torchsave_open(const struct ckpt_blob *b, struct tzip *z, struct ckpt_pickle *pk,
			uint8_t **pkl, struct ckpt_err *e);

/* Decodes the torch.save archive in b into *it.  Errors name b->label.
 * Thread-safe. */
int ckpt_item_decode(const struct ckpt_blob *b, struct ckpt_item *it, struct ckpt_err *e);

/* Byte offset, relative to the storage start, of the element at multi-index
 * idx (which must be inside it->size). */
uint64_t ckpt_item_elem_off(const struct ckpt_item *it, const int64_t *idx);

#endif
