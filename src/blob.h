/* blob.h - a byte range to parse: a slice [base, base+len) of an open file,
 * or a buffer in memory.  Parsers (zip, torch.save items) read through it so
 * they work the same on plain and on decompressed items. */
#ifndef CKPT_BLOB_H
#define CKPT_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ckpt_blob {
	int fd;               /* used when mem == NULL */
	uint64_t base;        /* file offset of byte 0 of the blob */
	uint64_t len;
	const uint8_t *mem;   /* when set, the blob is this buffer */
	const char *label;    /* names the blob in messages */
};

/* pread() that retries on EINTR and short counts.  Returns 0, -ENODATA when
 * the file ends early (truncated), or -errno of the failed pread (-EIO for a
 * device error).  Thread-safe. */
int ckpt_pread_full(int fd, void *buf, size_t n, uint64_t off);

/* Words for a ckpt_pread_full() error rc: "the file ends early (truncated?)"
 * for -ENODATA, strerror(-rc) otherwise. */
const char *ckpt_read_strerror(int rc);

/* Reads n bytes at blob offset off.  Fails with a message naming the blob and
 * the offset if the range leaves the blob or the read fails.  Thread-safe. */
int ckpt_blob_read(const struct ckpt_blob *b, uint64_t off, void *buf, size_t n,
		   struct ckpt_err *e);

#endif
