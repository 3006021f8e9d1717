/* cachekey.h - the identity of a served directory's bytes, naming its
 * blocks in the on-disk cache (dcache.h). */
#ifndef CKPT_CACHEKEY_H
#define CKPT_CACHEKEY_H

#include "catalog.h"
#include "layout.h"

#define CKPT_CACHE_KEY_LEN 32

/* Writes 32 hex digits (XXH3-128) into out (33 bytes) over everything that
 * decides the served bytes: the block format and converter version, the
 * source files' identity (path, size, mtime, inode, device), the bytes of
 * the checkpoint's .metadata, every catalogue tensor with its chunks and
 * their items, and the served layout (file names, sizes, headers, and
 * every output tensor's dtype, shape and recipe).  Any change to the
 * checkpoint or to the options that shape the output gives another key.
 * Returns 0 or -errno with a message in e. */
int ckpt_cache_key(const struct ckpt_catalog *c, const struct ckpt_layout *l, char *out,
		   struct ckpt_err *e);

#endif
