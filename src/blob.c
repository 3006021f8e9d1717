/* blob.c - see blob.h. */
#include "config.h"
#include "blob.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int ckpt_pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENODATA;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

const char *ckpt_read_strerror(int rc)
{
	return rc == -ENODATA ? "the file ends early (truncated?)" : strerror(-rc);
}

int ckpt_blob_read(const struct ckpt_blob *b, uint64_t off, void *buf, size_t n,
		   struct ckpt_err *e)
{
	if (off > b->len || n > b->len - off)
		return ckpt_err_set(e, -EINVAL,
				    "%s: byte %llu: need %zu bytes but the item is only %llu bytes long",
				    b->label, (unsigned long long)off, n, (unsigned long long)b->len);
	if (b->mem) {
		memcpy(buf, b->mem + off, n);
		return 0;
	}
	int rc = ckpt_pread_full(b->fd, buf, n, b->base + off);
	if (rc)
		return ckpt_err_set(e, rc, "%s: byte %llu (file offset %llu): read failed: %s",
				    b->label, (unsigned long long)off,
				    (unsigned long long)(b->base + off),
				    ckpt_read_strerror(rc));
	return 0;
}
