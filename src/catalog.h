/* catalog.h - the catalogue: every tensor of a DCP checkpoint with its dtype,
 * global shape and chunks, each chunk bound to its storage item.  Built from
 * metadata only (plus the small torch.save headers of each item); tensor data
 * is never read here.  Immutable after ckpt_catalog_open() except for the
 * lazily decoded items of transformed (compressed) chunks, which chunkio.c
 * fills under its own lock. */
#ifndef CKPT_CATALOG_H
#define CKPT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "dirlist.h"
#include "err.h"
#include "opts.h"

#include "tensors.h"

/* Opens the DCP checkpoint in dir: reads .metadata (or merges __*.metadata),
 * validates paths, file sizes and chunk coverage, and decodes the header of
 * every uncompressed item.  On failure returns -errno with a message in e and
 * leaves nothing to free. */
int ckpt_catalog_open(struct ckpt_catalog *c, const char *dir, const struct ckpt_opts *o,
		      struct ckpt_err *e);

void ckpt_catalog_close(struct ckpt_catalog *c);

/* Whether dir directly holds a checkpoint: .metadata, per-rank
 * __N.metadata files, or *.safetensors files. */
int ckpt_catalog_present(const char *dir);

/* Checks a decoded item against its tensor and chunk (dtype, shape) and
 * stores it in ch.  label names the item in messages. */
int ckpt_chunk_bind(const struct ckpt_tensor *t, struct ckpt_chunk *ch, const struct ckpt_item *it,
		    const char *label, struct ckpt_err *e);

/* Writes a label naming the item of chunk ch ("dir/file (item of 'fqn' at
 * file offset N)") into buf. */
void ckpt_item_label(const struct ckpt_catalog *c, const struct ckpt_tensor *t,
		     const struct ckpt_chunk *ch, char *buf, size_t n);

#endif
