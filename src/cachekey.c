/* cachekey.c - see cachekey.h. */
#include "config.h"
#include "cachekey.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "convert.h"

/* Bumped whenever the bytes a block holds could change for the same input:
 * the block format, the gather order or the conversion kernels. */
#define BLOCK_FORMAT "ckptfs-block-v1"

static void put_u64(XXH3_state_t *h, uint64_t v)
{
	XXH3_128bits_update(h, &v, sizeof(v));
}

static void put_str(XXH3_state_t *h, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	put_u64(h, n);
	if (n)
		XXH3_128bits_update(h, s, n);
}

static int put_file_bytes(XXH3_state_t *h, const char *path, struct ckpt_err *e)
{
	char buf[65536];
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : ckpt_err_set(e, -errno, "%s: %s", path, strerror(errno));
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		XXH3_128bits_update(h, buf, (size_t)r);
	int err = r < 0 ? -errno : 0;
	close(fd);
	return err ? ckpt_err_set(e, err, "%s: read failed: %s", path, strerror(-err)) : 0;
}

static int put_sources(XXH3_state_t *h, const struct ckpt_catalog *c, struct ckpt_err *e)
{
	put_u64(h, c->nfiles);
	for (size_t i = 0; i < c->nfiles; i++) {
		struct stat sb;
		if (fstat(c->files[i].fd, &sb) < 0)
			return ckpt_err_set(e, -errno, "%s/%s: %s", c->dir, c->files[i].relpath,
					    strerror(errno));
		put_str(h, c->files[i].relpath);
		put_u64(h, (uint64_t)sb.st_size);
		put_u64(h, (uint64_t)sb.st_mtim.tv_sec);
		put_u64(h, (uint64_t)sb.st_mtim.tv_nsec);
		put_u64(h, (uint64_t)sb.st_ino);
		put_u64(h, (uint64_t)sb.st_dev);
	}
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct ckpt_tensor *t = &c->tensors[i];
		put_str(h, t->name);
		put_u64(h, (uint64_t)t->dtype);
		XXH3_128bits_update(h, t->shape, sizeof(t->shape[0]) * (size_t)t->ndim);
		put_u64(h, t->nchunks);
		for (size_t k = 0; k < t->nchunks; k++) {
			const struct ckpt_chunk *ch = &t->chunks[k];
			XXH3_128bits_update(h, ch->off, sizeof(ch->off[0]) * (size_t)t->ndim);
			XXH3_128bits_update(h, ch->size, sizeof(ch->size[0]) * (size_t)t->ndim);
			put_u64(h, ch->file);
			put_u64(h, ch->item_off);
			put_u64(h, ch->item_len);
			put_u64(h, (uint64_t)ch->zstd);
		}
	}
	return 0;
}

static void put_layout(XXH3_state_t *h, const struct ckpt_layout *l)
{
	put_u64(h, l->n);
	for (size_t i = 0; i < l->n; i++) {
		const struct ckpt_vfile *f = &l->f[i];
		put_str(h, f->name);
		put_u64(h, (uint64_t)f->kind);
		put_u64(h, f->size);
		if (f->kind != CKPT_VF_WEIGHTS)
			continue;
		XXH3_128bits_update(h, f->head, f->head_len);
		for (size_t k = 0; k < f->next; k++) {
			const struct ckpt_vtensor *t = f->ext[k].t;
			put_u64(h, f->ext[k].start);
			put_str(h, t->name);
			put_u64(h, (uint64_t)t->dtype);
			put_u64(h, t->nseg);
			for (size_t s = 0; s < t->nseg; s++) {
				const struct ckpt_segment *sg = &t->seg[s];
				put_str(h, sg->src->name);
				XXH3_128bits_update(h, sg->lo, sizeof(sg->lo[0]) * (size_t)sg->src->ndim);
				XXH3_128bits_update(h, sg->hi, sizeof(sg->hi[0]) * (size_t)sg->src->ndim);
				put_u64(h, (uint64_t)sg->transpose);
			}
		}
	}
}

int ckpt_cache_key(const struct ckpt_catalog *c, const struct ckpt_layout *l, char *out,
		   struct ckpt_err *e)
{
	XXH3_state_t *h = XXH3_createState();
	char path[PATH_MAX];
	int rc;

	if (!h)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	XXH3_128bits_reset(h);
	put_str(h, BLOCK_FORMAT " " PACKAGE_VERSION);
	put_u64(h, CKPT_CONVERT_VERSION);
	snprintf(path, sizeof(path), "%s/.metadata", c->realdir);
	if (!(rc = put_file_bytes(h, path, e)) && !(rc = put_sources(h, c, e))) {
		put_layout(h, l);
		XXH128_hash_t v = XXH3_128bits_digest(h);
		snprintf(out, CKPT_CACHE_KEY_LEN + 1, "%016llx%016llx", (unsigned long long)v.high64,
			 (unsigned long long)v.low64);
	}
	XXH3_freeState(h);
	return rc;
}
